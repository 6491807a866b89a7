// ZeroMQ layer: see docs/ARCHITECTURE.md
