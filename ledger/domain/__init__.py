"""The domain: pure vocabulary, events, intake rules, pseudonyms, time, the hash chain and Merkle proofs. No I/O, no adapters."""
