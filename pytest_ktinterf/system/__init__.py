"""The machine underneath: process groups and their registry, memory cgroups, the machine lock,
the Docker engine and the registry-free tools image, and the embedded server's fetched assets."""
