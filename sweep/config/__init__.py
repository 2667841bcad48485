"""Config schemas, registration and validation."""
