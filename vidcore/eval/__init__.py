"""Evaluation of shape-video models: deterministic frame analyser and the held-out prompt set."""

from vidcore.eval.analyser import VideoAnalysis, analyse, analyse_batch, count_objects, evaluate, format_table
from vidcore.eval.prompts import HEADLINE_KINDS, KINDS, EvalPrompt, eval_prompts
from vidcore.eval.shapes import evaluate_generator, evaluate_videos, kind_report

__all__ = [
    "HEADLINE_KINDS",
    "KINDS",
    "EvalPrompt",
    "VideoAnalysis",
    "analyse",
    "analyse_batch",
    "count_objects",
    "eval_prompts",
    "evaluate",
    "evaluate_generator",
    "evaluate_videos",
    "format_table",
    "kind_report",
]
