"""The data stage: load folders and tables, fold, de-duplicate and split by name (:mod:`.dataset`);
get the tutorial's set (:mod:`namesclf.data.fetch`) and build the Wikipedia corpus (:mod:`.name2nat`,
:mod:`namesclf.data.wikipedia`); parse full names (:mod:`namesclf.data.fullnames`). Nothing here imports torch.
"""
