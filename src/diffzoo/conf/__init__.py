"""Hydra configs shipped with the package (a package so that the console scripts find them as ``pkg://diffzoo.conf``)."""
