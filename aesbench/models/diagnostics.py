"""Is a trained VLM looking at the image? Checks recorded after every training stage.

grounding   each learned answer's mean token loss with its own images and with another
            sample's images (the images rolled by one over the set): a model that reads the image
            has a clear gap (other > own); one that answers from the prompt alone has none. For
            readout samples, how far the readout's expectation moves when only the image changes.
            Also the aligner's tokens' norm against the LLM's word embeddings', and how much they
            vary across images (std over images / rms): near 0, the aligner writes a constant prompt.
probe       a ridge regression from the aligner's tokens (mean-pooled, standardised) to the scores, k-fold
            cross-validated on training images: what a linear read of the aligned tokens gets, the
            floor the LLM's readout must reach to show it does not lose what the aligner carries.
"""

from __future__ import annotations

import numpy as np
from scipy.stats import spearmanr

from ..weights import optional_import
from .vlm import ALIGN


def grounding(network, samples: list) -> dict:
    """Own-image vs other-image losses (answers) and readout movement (readout targets) on `samples`."""
    torch = optional_import("torch", "train", network.config.model_type)
    # alignment samples are asked as the plain questions they carry (their answers' LM loss)
    with_images = [
        type(s)(s.images, s.turns, s.reply, None if s.target and s.target[0] == ALIGN else s.target)
        for s in samples
        if s.images
    ]
    if len(with_images) < 2:
        return {"n": len(with_images), "note": "fewer than two samples with images"}
    swapped = [
        type(s)(with_images[(i + 1) % len(with_images)].images[: len(s.images)], s.turns, s.reply, s.target)
        for i, s in enumerate(with_images)
    ]
    swapped = [s for s, o in zip(swapped, with_images) if len(s.images) == len(o.images)]
    own_loss, other_loss, moved = [], [], []
    with torch.no_grad():
        for own, other in zip(with_images, swapped):
            a, b = network([own]), network([other])
            texts = [k for k in a if k != "kl"]
            if texts:
                own_loss.append(float(sum(a[k] for k in texts) / len(texts)))
                other_loss.append(float(sum(b[k] for k in texts) / len(texts)))
            if own.target is not None and own.target[0] in network.readouts:
                name = own.target[0]
                readout = network.readouts[name]
                pa, pb = (network.level_probs([s], name)[0] for s in (own, other))
                w = np.asarray(readout.weights)
                moved.append(abs(float(pa @ w - pb @ w)) / (w.max() - w.min()))
    words = network.llm.get_input_embeddings().weight.detach().float().norm(dim=-1).mean()
    with torch.no_grad():
        tokens = network.aligner(network.encode([img for s in with_images[:8] for img in s.images]))
    report = {
        "n": len(with_images),
        "token_norm_vs_words": round(float(tokens.norm(dim=-1).mean() / words), 3),
        "token_spread_across_images": round(float(tokens.std(0).mean() / tokens.pow(2).mean().sqrt()), 4),
    }
    if own_loss:
        own_loss, other_loss = np.array(own_loss), np.array(other_loss)
        report.update(
            answer_loss_own=round(float(own_loss.mean()), 4),
            answer_loss_other_image=round(float(other_loss.mean()), 4),
            answer_gap=round(float((other_loss - own_loss).mean()), 4),
            answers_better_with_own_image=round(float((own_loss < other_loss).mean()), 3),
            answers=len(own_loss),
        )
    if moved:
        report.update(readout_moved_by_image=round(float(np.mean(moved)), 4), readouts=len(moved))
    return report


def linear_probe(network, images: list, scores: list[float], folds: int = 5, alpha: float = 1.0, seed: int = 0) -> dict:
    """k-fold cross-validated SRCC of a ridge regression on the aligner's mean-pooled tokens."""
    torch = optional_import("torch", "train", network.config.model_type)
    if len(images) < 2 * folds:
        return {"n": len(images), "note": f"fewer than {2 * folds} images"}
    with torch.no_grad():
        features = np.concatenate(
            [
                network.aligner(network.encode(images[i : i + 32])).mean(1).float().cpu().numpy()
                for i in range(0, len(images), 32)
            ]
        )
    y = np.asarray(scores, dtype=np.float64)
    order = np.random.default_rng(seed).permutation(len(y))
    predicted = np.empty_like(y)
    for k in range(folds):
        test = order[k::folds]
        train = np.setdiff1d(order, test)
        mean, scale = (
            features[train].mean(0),
            features[train].std(0) + 1e-8,
        )  # each feature standardised on the fold's training part
        x = (features[train] - mean) / scale
        w = np.linalg.solve(x.T @ x + alpha * len(train) * np.eye(x.shape[1]), x.T @ (y[train] - y[train].mean()))
        predicted[test] = (features[test] - mean) / scale @ w + y[train].mean()
    return {"n": len(y), "folds": folds, "ridge_alpha": alpha, "srcc_cv": round(float(spearmanr(predicted, y)[0]), 4)}
