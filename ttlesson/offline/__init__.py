"""The offline model's world."""
