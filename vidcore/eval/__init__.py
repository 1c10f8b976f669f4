"""Evaluation of shape-video models: deterministic frame analyser and the held-out prompt set."""

from vidcore.eval.analyser import VideoAnalysis, analyse, analyse_batch, evaluate, format_table
from vidcore.eval.prompts import EvalPrompt, eval_prompts
from vidcore.eval.shapes import evaluate_generator, evaluate_videos

__all__ = [
    "EvalPrompt",
    "VideoAnalysis",
    "analyse",
    "analyse_batch",
    "eval_prompts",
    "evaluate",
    "evaluate_generator",
    "evaluate_videos",
    "format_table",
]
