"""The data contracts: Avro schemas, the codec, schema compatibility."""
