"""The character language model: its data and vocabulary, the network, training, and sampling.
Only :mod:`namesclf.training.train` imports training code.
"""
