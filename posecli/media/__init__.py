"""Media: decoding files to pixels and encoding pixels to files (images, video)."""
