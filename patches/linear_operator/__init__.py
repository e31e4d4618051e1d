"""The linear_operator patch series (package data of gpytorch-ext, shipped as ``gpytorch_ext.staging.series.linear_operator``).

This directory holds patch files and their ``series``, not code; see ``../README.md``.
"""
