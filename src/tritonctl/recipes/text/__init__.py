"""The text-embedding pipeline: MiniLM exported, verified, fused, quantized and configured."""
