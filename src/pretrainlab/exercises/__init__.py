"""Exercise kinds: the procedural worlds (biographies, k-hop, modular arithmetic), the interface every
kind follows (`base`), and how a design's `kind` names one (`registry`)."""
