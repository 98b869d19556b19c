"""The article's formulas written from scratch (§3), each checked against Keras in the tests.

One module per topic: the notebooks show the formula, these modules keep the tested copy.
"""
