"""Recipe families (one file each) and the registry of named recipes."""
