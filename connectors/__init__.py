"""One adapter per labelling platform behind one protocol (see connectors.base)."""
