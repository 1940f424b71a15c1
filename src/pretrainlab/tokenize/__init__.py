"""The tokenize stage: a BPE tokenizer trained on the kept records, mixtures packed into token shards."""
