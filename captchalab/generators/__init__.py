"""Synthetic captcha generators (torch-free)."""

from captchalab.generators.base import ANNOTATIONS_FILE, Rendered, generate, render, schemes

__all__ = ["ANNOTATIONS_FILE", "Rendered", "generate", "render", "schemes"]
