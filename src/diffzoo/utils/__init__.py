"""Small shared helpers: random numbers per sample, progress, image / plot output, run dirs."""
