"""The pure core: no file, network or tracking I/O happens here."""
