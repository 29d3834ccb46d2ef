"""Root conftest: what this repository's own test suite needs beyond the installed plugin.

The plugin itself is loaded through its ``pytest11`` entry point, exactly as users get it;
``pytester`` runs pytest in a subprocess to check what users see (errors, help, markers).
"""

pytest_plugins = ["pytester"]
