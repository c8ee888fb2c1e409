"""augpro: distil big text classifiers into small ones with augmentation made for distillation."""

__version__ = "0.1.0"
