"""The bottom layer: device choice and the checkpoint / export file formats, used by every layer above."""
