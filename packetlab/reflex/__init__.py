"""Endpoint-side reflexes: WebAssembly programs run per received packet (docs/reflexes.md)."""
