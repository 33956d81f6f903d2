"""graphpath_common: what every part of graphpath shares and nothing more: atomic file writes,
strict JSON, one writer per output folder, TOML reading, figure files, the unknown-key check and
the one-line CLI error path.

It imports no torch, no numba and no other part of graphpath, so `blog` (which never trains) and
`data_gen` can both stand on it. Its `__init__` imports nothing: take what you need from its
modules (`graphpath_common.files`, `.jsonfile`, `.locks`, `.toml`, `.figures`, `.keys`, `.cli`).
"""
