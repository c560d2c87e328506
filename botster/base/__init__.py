"""The bottom layer: errors, paths, the loop guard, config, identity, wire format.

Imports nothing else of botster (docs/architecture.md, "Layers").
"""
