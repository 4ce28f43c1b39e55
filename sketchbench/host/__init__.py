"""The plugin host: hook specifications, loading plugins, named registries."""
