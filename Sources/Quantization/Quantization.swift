// \(t) layer; see docs/ARCHITECTURE.md
