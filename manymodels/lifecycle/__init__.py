"""Looking after the registry once it holds thousands of models."""
