"""The command-line shell: parses, calls the library, reports. No heavy imports here."""
