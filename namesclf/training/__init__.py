"""Training a classifier: batches, the one fit loop (manual SGD or a torch optimizer), several
processes (DDP), calibration on the validation names, and the pipeline behind ``names train``.
"""
