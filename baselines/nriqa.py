"""Classic no-reference image quality (IQA) models as scoring baselines: BRISQUE and NIQE.

They measure technical distortion (noise, blur, compression), not aesthetics; they show how far
"looks undistorted" goes towards predicting aesthetic scores. No training happens here.

Direction and mapping. Both raw values are lower-is-better. The adapters return score = −raw
rounded to 10 significant digits: higher means better, SRCC/PLCC/KRCC read as usual, and the raw
value stays in the predictions file (raw = −score to 10 digits). The rounding is there because
recomputations of raw differ by about 1e-12 from run to run (floating-point summation order), which
would otherwise break exact ties at random: tiny-art's colour-only edits leave the grey image, and
so the true BRISQUE value, unchanged. The request's score range is ignored, so threshold and distance
metrics (acc, mse, emd) say nothing for these models.

BRISQUE (Mittal, Moorthy & Bovik, IEEE TIP 2012) with the trained model of the `brisque` package
(0.2.0): brisque/models/svm.txt (a libsvm epsilon-SVR) and normalize.pickle (per-feature min and
max). The package scores with `BRISQUE(url=False).score(array)`; it reads both files from its own
folder and downloads nothing unless url=True. But it cannot be imported without OpenCV, which its
plain install does not pull in, and under NumPy 2 its score() fails (float() of a one-element
array). So the features are computed here step for step as the package computes them (skimage
rgb2gray; MSCN with a 7×7, σ = 7/6 Gaussian, zero padding and C = 1/255; AGGD fits of the MSCN map
and its four neighbour products with scipy.optimize.root started at 0.2; the same at half size),
with the package's one OpenCV call, cv2.resize(fx=fy=1/2, INTER_CUBIC), replaced by an exact port
(`half_size_cubic`). The features are min-max scaled to [−1, 1] and the SVR predicts. The
package's normalize.pickle is its own shipped file; it is read with an unpickler that refuses
every class (the file holds two lists of floats), so reading it runs no code.

NIQE (Mittal, Soundararajan & Bovik, IEEE SPL 2013) as the official MATLAB release computes it
(computequality.m): grey = MATLAB rgb2gray rounded to uint8; crop to whole 96×96 blocks; MSCN with
fspecial('gaussian', 7, 7/6), replicate borders and C = 1; per block 18 features (AGGD shape and
mean scale of the MSCN values, then shape, mean, left and right scale of the products with the
four neighbours, np.roll as circshift; shape by grid search over 0.2:0.001:10); the same on the
image halved by MATLAB imresize (bicubic, antialiased) in 48×48 blocks; a Gaussian fit to the
36-D block features (nanmean, covariance over complete rows) and the distance
sqrt((μp − μd)ᵀ pinv((Σp + Σd)/2) (μp − μd)). Every block is used here; the sharpness selection
(blocks sharper than 0.75 of the sharpest) belongs to fitting the pristine model, not to scoring.

The pristine model (μp, Σp) is the standard one: mu_prisparam and cov_prisparam of
modelparameters.mat from the LIVE NIQE release (fitted on 125 pristine photographs), stored in
niqe_pris_params.npz beside this file under the original names. The values were taken unchanged
from BasicSR 1.4.2 (Apache-2.0; sdist basicsr-1.4.2.tar.gz, basicsr/metrics/niqe_pris_params.npz,
sha256 2a7c182a…c4296), BasicSR's conversion of that .mat file. The LIVE release allows use,
copying and redistribution with its notice: Copyright (c) 2011 The University of Texas at Austin;
cite A. Mittal, R. Soundararajan and A. C. Bovik, "NIQE Software Release", 2012, and "Making a
Completely Blind Image Quality Analyzer", IEEE Signal Processing Letters, 2013.

An image without a whole 96×96 block, or whose blocks are all flat, has no NIQE: its score is NaN
and the run records it as skipped. Images under about 200 px give NIQE only two to four blocks,
which makes its covariance term crude.
"""

from __future__ import annotations

import importlib.util
import io
import pickle
import warnings
from importlib.metadata import version
from pathlib import Path

import numpy as np
from PIL import Image
from scipy import ndimage, optimize, signal, special

from aesbench.adapter import Model, Request, register
from aesbench.provenance import sha256_file
from aesbench.errors import AesbenchError
from aesbench.weights import optional_import

NIQE_PARAMS = Path(__file__).with_name("niqe_pris_params.npz")
NIQE_BLOCK = 96
# MATLAB rgb2gray: the first row of inv([1 0.956 0.621; 1 -0.272 -0.647; 1 -1.106 1.703]).
MATLAB_GREY = np.array([0.298936021293775, 0.587043074451121, 0.114020904255103])
# cv2.resize INTER_CUBIC (a = −0.75) at scale 1/2 samples halfway between two pixels.
HALF_CUBIC_TAPS = np.array([-0.09375, 0.59375, 0.59375, -0.09375])


def significant(x: float, digits: int = 10) -> float:
    """x rounded to `digits` significant digits (see the module docstring)."""
    return float(f"{x:.{digits - 1}e}")


def _gaussian_window(size: int, sigma: float, peak: float = 1.0) -> np.ndarray:
    y, x = np.indices((size, size)) - size // 2
    window = peak * np.exp(-(x**2 + y**2) / (2 * sigma**2))
    return window / np.sum(window)


# The same 7×7, σ = 7/6 window computed as each reference computes it, since MSCN divides by a
# local deviation that cancels to nearly nothing in flat regions and amplifies the last bit.
NIQE_WINDOW = _gaussian_window(7, 7 / 6)  # fspecial('gaussian', 7, 7/6)
BRISQUE_WINDOW = _gaussian_window(7, 7 / 6, peak=1 / (2 * np.pi * (7 / 6) ** 2))  # brisque's gaussian_kernel2d


# --- BRISQUE, as the brisque package computes it -----------------------------------------------


def half_size_cubic(gray: np.ndarray) -> np.ndarray:
    """cv2.resize(gray, None, fx=0.5, fy=0.5, interpolation=cv2.INTER_CUBIC) for a float image.

    OpenCV rounds the output size half to even, maps output x to input 2x + 0.5 and clamps the
    four taps at the border; the result matches OpenCV 5.0 bit for bit on float64 images.
    """

    def taps(n_in):
        n_out = int(np.rint(n_in / 2))
        return np.clip(2 * np.arange(n_out)[:, None] + np.arange(-1, 3), 0, n_in - 1)

    rows, cols = taps(gray.shape[0]), taps(gray.shape[1])
    across = gray[:, cols] @ HALF_CUBIC_TAPS
    return np.einsum("rkw,k->rw", across[rows], HALF_CUBIC_TAPS)


def _aggd_fit(x: np.ndarray) -> tuple[float, float, float, float]:
    """The package's asymmetric generalized Gaussian fit: shape, mean, left and right std."""
    left, right = x[x < 0], x[x >= 0]
    sigma_l = np.sqrt(np.sum(left**2) / left.size)
    sigma_r = np.sqrt(np.sum(right**2) / right.size)
    r_hat = (np.sum(np.abs(x)) / x.size) ** 2 / (np.sum(x**2) / x.size)
    gamma = sigma_l / sigma_r
    big_r = r_hat * (gamma**3 + 1) * (gamma + 1) / (gamma**2 + 1) ** 2

    def phi(a):
        return special.gamma(2 / a) ** 2 / (special.gamma(1 / a) * special.gamma(3 / a))

    alpha = optimize.root(lambda a: phi(a) - big_r, [0.2]).x[0]
    constant = np.sqrt(special.gamma(1 / alpha) / special.gamma(3 / alpha))
    mean = (sigma_r - sigma_l) * constant * special.gamma(2 / alpha) / special.gamma(1 / alpha)
    return float(alpha), float(mean), float(sigma_l), float(sigma_r)


def _brisque_scale_features(image: np.ndarray) -> list[float]:
    mu = signal.convolve2d(image, BRISQUE_WINDOW, "same")
    sigma = np.sqrt(np.abs(mu**2 - signal.convolve2d(image**2, BRISQUE_WINDOW, "same")))
    mscn = (image - mu) / (sigma + 1 / 255)
    alpha, _, sigma_l, sigma_r = _aggd_fit(mscn)
    features = [alpha, (sigma_l**2 + sigma_r**2) / 2]
    products = (
        mscn[:, :-1] * mscn[:, 1:],
        mscn[:-1, :] * mscn[1:, :],
        mscn[:-1, :-1] * mscn[1:, 1:],
        mscn[1:, :-1] * mscn[:-1, 1:],
    )
    for pair in products:
        alpha, mean, sigma_l, sigma_r = _aggd_fit(pair)
        features += [alpha, mean, sigma_l**2, sigma_r**2]
    return features


def brisque_features(gray: np.ndarray) -> np.ndarray:
    """The 36 BRISQUE features of a grey image in [0, 1]: 18 at full size, 18 at half size."""
    with np.errstate(all="ignore"):
        return np.array(_brisque_scale_features(gray) + _brisque_scale_features(half_size_cubic(gray)))


class _NoClasses(pickle.Unpickler):
    def find_class(self, module, name):
        raise pickle.UnpicklingError(f"refusing to load {module}.{name}: normalize.pickle should hold plain lists")


def _brisque_model_dir() -> Path:
    """The package's models folder, found without importing the package (its import needs OpenCV)."""
    spec = importlib.util.find_spec("brisque")
    folder = Path(spec.origin).parent / "models" if spec and spec.origin else None
    if folder is None or not (folder / "svm.txt").is_file() or not (folder / "normalize.pickle").is_file():
        raise AesbenchError(
            "model 'brisque' needs the 'iqa' extra: pip install 'aesbench[iqa]' (the brisque package and its models/ folder)"
        )
    return folder


@register("brisque")
class Brisque(Model):
    """BRISQUE with the brisque package's trained SVR; score = −BRISQUE (lower raw is better)."""

    capabilities = frozenset({"score"})
    on_task_scale = False

    def __init__(self):
        self._svm = optional_import("libsvm.svmutil", "iqa", "brisque")
        self._color = optional_import("skimage.color", "iqa", "brisque")
        folder = _brisque_model_dir()
        self.files = {name: folder / name for name in ("svm.txt", "normalize.pickle")}
        self.model = self._svm.svm_load_model(str(self.files["svm.txt"]))
        scale = _NoClasses(io.BytesIO(self.files["normalize.pickle"].read_bytes())).load()
        self.low, self.high = np.array(scale["min_"], dtype=np.float64), np.array(scale["max_"], dtype=np.float64)

    def describe(self) -> dict:
        return {
            "name": self.name,
            "config": self.config(),
            "direction": "lower raw BRISQUE is better; score = -raw to 10 significant digits",
            "model": f"brisque {version('brisque')} package, models/svm.txt and models/normalize.pickle",
            "weights": {name: sha256_file(path) for name, path in self.files.items()},
        }

    def raw(self, img: Image.Image) -> float:
        """The BRISQUE value of one image (lower is better)."""
        gray = self._color.rgb2gray(np.asarray(img.convert("RGB")))
        scaled = -1 + 2.0 / (self.high - self.low) * (brisque_features(gray) - self.low)
        nodes, _ = self._svm.gen_svm_nodearray([float(f) for f in scaled], isKernel=False)
        return float(self._svm.libsvm.svm_predict(self.model, nodes))

    def score(self, images: list[Image.Image], request: Request) -> list[dict]:
        return [{"score": -significant(self.raw(img))} for img in images]


# --- NIQE, as the official MATLAB release computes it -------------------------------------------


def _matlab_cubic(x: np.ndarray) -> np.ndarray:
    ax = np.abs(x)
    return (1.5 * ax**3 - 2.5 * ax**2 + 1) * (ax <= 1) + (-0.5 * ax**3 + 2.5 * ax**2 - 4 * ax + 2) * (
        (ax > 1) & (ax <= 2)
    )


def matlab_imresize_half(img: np.ndarray) -> np.ndarray:
    """MATLAB imresize(img, 0.5) for a 2-D double image: bicubic, antialiased, symmetric borders."""
    scale, width = 0.5, 4 / 0.5  # antialiasing stretches the 4-wide kernel by 1/scale

    def weights(n_in):
        u = np.arange(1, int(np.ceil(n_in * scale)) + 1) / scale + 0.5 * (1 - 1 / scale)
        index = np.floor(u - width / 2)[:, None] + np.arange(int(np.ceil(width)) + 2)
        w = scale * _matlab_cubic(scale * (u[:, None] - index))
        mirror = np.concatenate([np.arange(n_in), np.arange(n_in)[::-1]])
        matrix = np.zeros((len(u), n_in))
        np.add.at(
            matrix,
            (np.arange(len(u))[:, None], mirror[(index.astype(int) - 1) % (2 * n_in)]),
            w / w.sum(1, keepdims=True),
        )
        return matrix

    return weights(img.shape[1]).dot(weights(img.shape[0]).dot(img).T).T


GAM = 0.2 + 0.001 * np.arange(9801)  # MATLAB's 0.2:0.001:10
R_GAM = special.gamma(2 / GAM) ** 2 / (special.gamma(1 / GAM) * special.gamma(3 / GAM))


def _aggd_grid(v: np.ndarray) -> tuple[float, float, float]:
    """estimateaggdparam.m: shape by grid search, then left and right scale."""
    left_std = np.sqrt(np.mean(v[v < 0] ** 2))
    right_std = np.sqrt(np.mean(v[v > 0] ** 2))
    gamma_hat = left_std / right_std
    r_hat = np.mean(np.abs(v)) ** 2 / np.mean(v**2)
    r_norm = r_hat * (gamma_hat**3 + 1) * (gamma_hat + 1) / (gamma_hat**2 + 1) ** 2
    alpha = GAM[np.argmin((R_GAM - r_norm) ** 2)]
    ratio = np.sqrt(special.gamma(1 / alpha) / special.gamma(3 / alpha))
    return alpha, left_std * ratio, right_std * ratio


def _niqe_block_features(block: np.ndarray) -> list[float]:
    """computefeature.m: 18 features of one block of MSCN values."""
    alpha, beta_l, beta_r = _aggd_grid(block.ravel())
    features = [alpha, (beta_l + beta_r) / 2]
    for shift in ((0, 1), (1, 0), (1, 1), (1, -1)):
        alpha, beta_l, beta_r = _aggd_grid((block * np.roll(block, shift, axis=(0, 1))).ravel())
        mean = (beta_r - beta_l) * special.gamma(2 / alpha) / special.gamma(1 / alpha)
        features += [alpha, mean, beta_l, beta_r]
    return features


def niqe_features(gray: np.ndarray, block: int = NIQE_BLOCK) -> np.ndarray:
    """One 36-D row per whole block: 18 features at full size, 18 at half size."""
    rows, cols = gray.shape[0] // block, gray.shape[1] // block
    img = gray[: rows * block, : cols * block].astype(np.float64)
    per_scale = []
    for scale in (1, 2):
        mu = ndimage.correlate(img, NIQE_WINDOW, mode="nearest")
        sigma = np.sqrt(np.abs(ndimage.correlate(img * img, NIQE_WINDOW, mode="nearest") - mu * mu))
        mscn = (img - mu) / (sigma + 1)
        size = block // scale
        blocks = mscn.reshape(rows, size, cols, size).swapaxes(1, 2).reshape(-1, size, size)
        with np.errstate(all="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # flat blocks: mean of nothing, 0/0
            per_scale.append(np.array([_niqe_block_features(b) for b in blocks]).reshape(len(blocks), 18))
        if scale == 1:
            img = matlab_imresize_half(img)
    return np.hstack(per_scale)


def niqe_distance(features: np.ndarray, mu_pris: np.ndarray, cov_pris: np.ndarray) -> float:
    """Distance between the image's Gaussian fit and the pristine one (NaN when nothing was measurable)."""
    complete = features[~np.isnan(features).any(axis=1)]
    if len(complete) == 0:
        return float("nan")
    mu = np.nanmean(features, axis=0)
    # MATLAB's nancov of a single row is zeros (it normalises by N when N = 1).
    cov = np.cov(complete, rowvar=False) if len(complete) > 1 else np.zeros_like(cov_pris)
    diff = mu_pris - mu
    return float(np.sqrt(diff @ np.linalg.pinv((cov_pris + cov) / 2) @ diff))


def matlab_rgb2gray(img: Image.Image) -> np.ndarray:
    """MATLAB rgb2gray of a uint8 RGB image: weighted sum rounded half away from zero to uint8."""
    return np.floor(np.asarray(img.convert("RGB"), dtype=np.float64) @ MATLAB_GREY + 0.5)


@register("niqe")
class Niqe(Model):
    """NIQE with the standard pristine model of the LIVE release; score = −NIQE (lower raw is better)."""

    capabilities = frozenset({"score"})
    on_task_scale = False

    def __init__(self):
        if not NIQE_PARAMS.is_file():
            raise AesbenchError(f"model 'niqe': its pristine model {NIQE_PARAMS} is missing; reinstall aesbench")
        with np.load(NIQE_PARAMS) as params:
            self.mu_pris, self.cov_pris = params["mu_prisparam"], params["cov_prisparam"]

    def describe(self) -> dict:
        return {
            "name": self.name,
            "config": self.config(),
            "direction": "lower raw NIQE is better; score = -raw to 10 significant digits",
            "model": "standard NIQE pristine model (mu_prisparam, cov_prisparam of the LIVE release's modelparameters.mat)",
            "block_size": NIQE_BLOCK,
            "weights": {NIQE_PARAMS.name: sha256_file(NIQE_PARAMS)},
        }

    def raw(self, img: Image.Image) -> float:
        """The NIQE value of one image (lower is better; NaN without a whole 96×96 block)."""
        gray = matlab_rgb2gray(img)
        if min(gray.shape) < NIQE_BLOCK:
            return float("nan")
        return niqe_distance(niqe_features(gray), self.mu_pris, self.cov_pris)

    def score(self, images: list[Image.Image], request: Request) -> list[dict]:
        return [{"score": -significant(self.raw(img))} for img in images]
