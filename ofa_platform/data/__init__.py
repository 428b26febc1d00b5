"""Data bigger than memory: Parquet shards (conversion, validation, row access) and the Ray
Data stream that feeds training workers without decoding a whole dataset in any process."""

__all__: list[str] = []
