"""What a model is: the networks (:mod:`.handbuilt`, :mod:`.networks`), the n-gram Bayes half
(:mod:`.ngram`), its novelty features (:mod:`.novelty`), the model file (:mod:`.checkpoint`) and
the ONNX export (:mod:`.export`, :mod:`.onnx_format`). Nothing here trains.
"""
