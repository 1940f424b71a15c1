"""The curate stage: exact dedup and decontamination against probes; what it removes, it writes down."""
