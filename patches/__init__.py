"""The patch series, shipped inside the package as ``gpytorch_ext.staging.series`` (see ``pyproject.toml``).

This directory stays at the top level of the repository; the build maps it into the package, so that an installed
wheel carries ``series`` and the patch files as package data, found with :mod:`importlib.resources`.
"""
