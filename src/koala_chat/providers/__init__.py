"""Providers: the gpt4free-style base classes and the Koala provider."""

from .base import AsyncGeneratorProvider, ProviderModelMixin
from .koala import Koala

__all__ = ["AsyncGeneratorProvider", "Koala", "ProviderModelMixin"]
