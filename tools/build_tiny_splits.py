"""Build the tiny twins of AVA, AVA-Captions, PCCD, FLICKR-AES (corpus photos) and APDDv2 (corpus art).

Usage (from the repository root):

    python tools/build_tiny_splits.py --corpus ../shared/corpus --out tasks/data

Every image comes from a corpus row with kind=photo (kind=art for tiny-art), resized so its long
side is 256 px, then edited only through `aesbench.degradations` (plus PIL ImageEnhance
for the FLICKR-AES colour edits that can also *increase* brightness, saturation or contrast).
Labels are computed from the edits and from properties measured on the edited images; they test
the benchmark machinery and are NOT human ratings.

The output is a pure function of the corpus: all randomness comes from `item_rng(SEED, key)` with
a key naming the dataset, purpose and item; files are visited in sorted order; JPEGs are written
with fixed settings and no metadata; no timestamps are written. Two runs give byte-identical files.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import re
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageEnhance
from scipy import ndimage, stats

from aesbench.datasets import APDD_ATTRIBUTES, APDD_TOTAL, attribute_key
from aesbench.degradations import DEGRADATIONS, degrade, item_rng
from aesbench.descriptions import FORMAT_KEY, FORMAT_VERSION, LEVELS, score_sentence

# ---------------------------------------------------------------------------------------------
# Shared settings
# ---------------------------------------------------------------------------------------------
SEED = 2025  # the one seed; every generator is item_rng(SEED, "<dataset>/<purpose>/<item>")
LONG_SIDE = 256  # every source photo is resized (LANCZOS) so its long side is this
JPEG_QUALITY = 92  # every output JPEG: this quality, 4:2:0 chroma subsampling, no EXIF
SEVERITY_DECIMALS = 3  # drawn edit parameters are rounded before use, so the records are exact
SUBDIRS = ("tiny-ava", "tiny-pccd", "tiny-flickr-aes", "tiny-art")  # the folders this script owns under --out

# ---------------------------------------------------------------------------------------------
# tiny-ava (AVA scores + AVA-Captions comments)
# ---------------------------------------------------------------------------------------------
AVA_FIRST_ID = 100001  # AVA-style numeric ids: photo p (sorted order), variant v -> FIRST_ID + 3p + v
AVA_EDITED_VARIANTS = 2  # variant 0 is the clean photo; variants 1..2 are edited
AVA_KINDS = (
    "defocus_blur",
    "motion_blur",
    "gaussian_noise",
    "dark",
    "bright",
    "desaturated",
    "jpeg",
    "low_contrast",
    "pixelate",
)
AVA_SEVERITY_RANGE = (0.25, 1.0)  # each edit's severity ~ U[0.25, 1.0]
AVA_TWO_EDIT_PROB = 0.25  # probability that a variant gets two kinds applied in sequence
AVA_EXCLUSIVE_PAIRS = ({"dark", "bright"},)  # kinds never combined (they would cancel out)
AVA_BASE_RANGE = (5.6, 6.8)  # base(photo) ~ U[5.6, 6.8]: the clean photo's target MOS
AVA_PENALTY_PER_SEVERITY = 3.2  # penalty = sum over applied edits of 3.2 * severity
AVA_TARGET_CLIP = (1.5, 8.5)  # target MOS = clip(base - penalty, 1.5, 8.5)
AVA_VOTE_SD = 1.3  # sd of the discretised Gaussian the votes follow
AVA_VOTERS_RANGE = (120, 250)  # number of voters ~ uniform integer in [120, 250]
AVA_TEST_PHOTOS = 20  # photos (x3 images) in generic_test.jpgl
AVA_VAL_PHOTOS = 5  # photos (x3 images) with split "val" in ava_captions.json
AVA_TAGS = (0, 0)  # AVA semantic tags 1 and 2 (0 = no tag)
AVA_CHALLENGE_ID = 1  # AVA challenge id column
CAPTIONS_PER_IMAGE = 5

# Comment phrase banks. "sentences": complete comments; "states": phrases that fit "the photo is
# ___"; "advice": how to fix it. Every kind has at least five of each.
EDIT_PHRASES = {
    "defocus_blur": {
        "sentences": [
            "The photo is out of focus and looks soft.",
            "Too blurry, the details are lost.",
            "Nothing in the frame is sharp.",
            "The focus missed, so everything looks mushy.",
            "The whole picture is soft and out of focus.",
            "I cannot find a single sharp detail here.",
        ],
        "states": [
            "out of focus",
            "soft and blurry",
            "badly blurred",
            "not sharp at all",
            "too blurry",
            "missing focus",
        ],
        "advice": [
            "Check your focus before you shoot.",
            "Focus carefully on the subject.",
            "Use autofocus on the main subject.",
            "A smaller aperture would help.",
            "Take care to nail the focus next time.",
        ],
    },
    "motion_blur": {
        "sentences": [
            "Camera shake has smeared the whole image.",
            "There is motion blur everywhere.",
            "The image is streaked by camera movement.",
            "Everything is smeared in one direction.",
            "Shaky hands ruined the sharpness here.",
            "The shot is blurred by movement.",
        ],
        "states": [
            "smeared by camera shake",
            "blurred by motion",
            "streaky and shaken",
            "ruined by camera shake",
            "full of motion blur",
        ],
        "advice": [
            "Use a faster shutter speed.",
            "A tripod would fix the shake.",
            "Hold the camera steady.",
            "Brace yourself or use a tripod.",
            "Raise the shutter speed to freeze the motion.",
        ],
    },
    "gaussian_noise": {
        "sentences": [
            "The image is full of grainy noise.",
            "Way too much noise, it looks like sand.",
            "Heavy grain covers the whole picture.",
            "The noise is distracting and hides the details.",
            "It is very noisy and speckled.",
            "The picture is spoiled by digital noise.",
        ],
        "states": ["grainy", "very noisy", "full of speckles", "covered in grain", "spoiled by noise"],
        "advice": [
            "Use a lower ISO.",
            "Try some noise reduction.",
            "Give it more light and lower the ISO.",
            "A longer exposure at low ISO would be cleaner.",
            "Denoise it before posting.",
        ],
    },
    "dark": {
        "sentences": [
            "Underexposed, the scene is far too dark.",
            "It is much too dark to see anything.",
            "The exposure is too low and the shadows swallow everything.",
            "Way too dark, the subject is hidden.",
            "The picture is murky and underexposed.",
            "Too dim, I have to squint to see it.",
        ],
        "states": ["underexposed", "far too dark", "murky and dim", "too dark", "lost in the shadows"],
        "advice": [
            "Open up the exposure.",
            "Brighten it in editing.",
            "Use a longer exposure.",
            "Add some light to the scene.",
            "Raise the exposure a few stops.",
        ],
    },
    "bright": {
        "sentences": [
            "Overexposed, the highlights are blown out.",
            "It is far too bright and washed out.",
            "The exposure is too high and the whites are burnt.",
            "Too much light, the details are bleached away.",
            "The picture is blown out and glaring.",
            "Everything is too bright to enjoy.",
        ],
        "states": ["overexposed", "far too bright", "blown out", "washed out by light", "bleached and glaring"],
        "advice": [
            "Bring the exposure down.",
            "Use a faster shutter speed or a smaller aperture.",
            "Watch the highlights when you expose.",
            "Darken it a little in editing.",
            "Expose for the highlights next time.",
        ],
    },
    "desaturated": {
        "sentences": [
            "The colours are dull and washed out.",
            "It looks almost grey, the colour is gone.",
            "The colours are faded and lifeless.",
            "The palette is drab and flat.",
            "There is hardly any colour left in it.",
            "The muted colours make it look tired.",
        ],
        "states": ["dull and colourless", "washed out", "faded", "drab and grey", "lacking colour"],
        "advice": [
            "Boost the saturation a bit.",
            "Bring the colours back in editing.",
            "Add some vibrance.",
            "Shoot in better light for richer colours.",
            "Let the colours pop.",
        ],
    },
    "jpeg": {
        "sentences": [
            "Heavy compression artifacts ruin the image.",
            "It is blocky from too much JPEG compression.",
            "The compression left ugly blocks and halos.",
            "The file quality is poor and full of artifacts.",
            "Blocky artifacts cover the details.",
            "It looks like a badly compressed copy.",
        ],
        "states": [
            "blocky",
            "full of compression artifacts",
            "badly compressed",
            "covered in JPEG blocks",
            "low quality and blocky",
        ],
        "advice": [
            "Save it at a higher quality.",
            "Post the original file instead.",
            "Use less compression.",
            "Export at a higher JPEG quality.",
            "Avoid saving it again and again.",
        ],
    },
    "low_contrast": {
        "sentences": [
            "The image is flat with no contrast.",
            "It looks grey and hazy, lacking contrast.",
            "There is no punch, the tones are flat.",
            "Low contrast makes it look foggy.",
            "The blacks are grey and the whites are dull.",
            "The picture lacks depth because it is so flat.",
        ],
        "states": ["flat", "low in contrast", "hazy and grey", "lacking punch", "dull and foggy"],
        "advice": [
            "Add some contrast.",
            "Deepen the blacks a bit.",
            "Try a curves adjustment.",
            "Give the tones more punch.",
            "Stretch the levels in editing.",
        ],
    },
    "pixelate": {
        "sentences": [
            "The image is pixelated and blocky.",
            "It looks like it was blown up from a tiny picture.",
            "Big square pixels ruin the details.",
            "The resolution is far too low.",
            "The picture is a mosaic of coarse pixels.",
            "It is so pixelated that the subject is hard to read.",
        ],
        "states": [
            "pixelated",
            "far too low in resolution",
            "blocky and coarse",
            "a mess of square pixels",
            "badly upscaled",
        ],
        "advice": [
            "Use the full resolution file.",
            "Do not upscale small images.",
            "Shoot at a higher resolution.",
            "Post the original size.",
            "Avoid enlarging it so much.",
        ],
    },
}
# Praise for clean images, by aspect: focus, exposure, colour, and overall.
PRAISE = {
    "focus": [
        "Sharp focus right where it matters.",
        "Beautifully sharp and crisp.",
        "The details are crisp and clear.",
        "Focus is spot on.",
        "Very sharp, every detail holds up.",
    ],
    "exposure": [
        "The exposure is just right.",
        "Good exposure with detail in every tone.",
        "Nicely exposed, nothing is blown out.",
        "Well balanced light throughout.",
        "The lighting is well handled.",
    ],
    "colour": [
        "Pleasant, natural colours.",
        "The colours are rich and lovely.",
        "Nice vivid colours without overdoing it.",
        "I like the colour palette.",
        "Lovely colour balance.",
    ],
    "overall": [
        "A clean, well made photo.",
        "Well done, a very nice shot.",
        "Great image, nothing to fix.",
        "This one works for me.",
        "A really pleasing picture.",
    ],
}
TEMPLATE_FIELDS = {"sentence": "sentences", "state": "states", "advice": "advice"}  # {field} -> bank
CLEAN_TEMPLATES = (
    "{focus}",
    "{exposure}",
    "{colour}",
    "{overall} {focus}",
    "{exposure} {colour}",
    "{focus} {colour}",
    "{overall} {exposure}",
)
ONE_EDIT_TEMPLATES = (
    "{sentence}",
    "The photo is {state}.",
    "{sentence} {advice}",
    "Nice subject, but the image is {state}.",
    "It is {state}, which spoils it.",
    "Too bad it is {state}. {advice}",
)
TWO_EDIT_TEMPLATES = (
    "The photo is {state_a} and {state_b}.",
    "{sentence_a} {sentence_b}",
    "Two problems: it is {state_a}, and it is also {state_b}.",
    "Besides being {state_a}, the shot is {state_b}.",
    "Sadly it is {state_a} as well as {state_b}.",
    "{sentence_a} It is also {state_b}.",
)

# ---------------------------------------------------------------------------------------------
# tiny-pccd (clean photos + critiques for the suggest task)
# ---------------------------------------------------------------------------------------------
PCCD_IMAGES = 36
PCCD_LOW = 6  # this many get a low overall, so a top-30 rule drops them
PCCD_HIGH_RANGE = (7.5, 9.5)  # overall ~ U[7.5, 9.5] (rounded to 2 decimals) for the rest
PCCD_LOW_RANGE = (3.0, 5.0)  # overall ~ U[3.0, 5.0] for the low ones
# What each photo shows (looked up by eye once; used only in PCCD critique texts).
SUBJECTS = {
    "lomiri_Bridge_by_Sander_Klootwijk.jpg": "bridge cables against a wide sky over a beach",
    "lomiri_Kleiber_by_Lukas_Baubkus.jpg": "a nuthatch climbing a tree trunk",
    "lomiri_aitzgorri_by_Aitzol_Berasategi.jpg": "an autumn forest below a mountain ridge",
    "lomiri_friends_by_Aitzol_Berasategi.jpg": "two dogs looking out of a window",
    "lomiri_picosdeeuropa_by_Aitzol_Berasategi.jpg": "a mountain path under rocky peaks",
    "lomiri_seeding_by_Clements_Engelhardt.jpg": "dandelion clocks in backlit grass",
    "lomiri_umang_by_Abhishek_Mudgal.jpg": "an abstract colour gradient",
    "lxqt_Butterfly-Kenneth-Wimer.jpg": "a butterfly on a wildflower stem",
    "lxqt_after-the-rain.jpg": "storm clouds lit by the setting sun",
    "lxqt_appleflower.jpg": "apple blossom on a thin twig",
    "lxqt_butterfly.jpg": "a swallowtail butterfly on a thistle",
    "lxqt_drop.jpg": "a water drop hanging from a blade of grass",
    "mate_Blinds.jpg": "the veins of a green leaf",
    "mate_Dune.jpg": "dune grass by the sea",
    "mate_Garden.jpg": "a red marigold flower",
    "mate_GreenMeadow.jpg": "fresh green grass blades",
    "mate_RainDrops.jpg": "raindrops on green leaves",
    "mate_Storm.jpg": "a dark storm sky over a road",
    "mate_Wood.jpg": "a pale wooden surface",
    "matplotlib_grace_hopper.jpg": "a formal portrait of a naval officer",
    "opencv_aero1.jpg": "an aerial view of a town",
    "opencv_aloeL.jpg": "a potted aloe plant",
    "opencv_baboon.jpg": "the face of a mandrill",
    "opencv_board.jpg": "a green circuit board",
    "opencv_building.jpg": "a modern office building",
    "opencv_ela_original.jpg": "a black notebook with a green strap",
    "opencv_fruits.jpg": "sliced citrus fruit and a kiwi",
    "opencv_home.jpg": "an ornate palace under a blue sky",
    "opencv_messi5.jpg": "a footballer striking the ball",
    "opencv_orange.jpg": "a single orange",
    "opencv_rubberwhale1.jpg": "toys in front of a wooden lattice",
    "opencv_smarties.jpg": "coloured sweets on a white table",
    "plasma_BytheWater.jpg": "a wooden jetty by a lake",
    "plasma_ColorfulCups.jpg": "rows of coloured plastic cups",
    "plasma_EveningGlow.jpg": "rowing boats on a lake at sunset",
    "plasma_FallenLeaf.jpg": "a fallen maple leaf in autumn",
    "plasma_Grey.jpg": "the curved lines of a modern facade",
    "plasma_MilkyWay.jpg": "an abstract pattern of glowing dots",
    "plasma_Path.jpg": "a path through a dark pine forest",
    "scikit_astronaut.jpg": "an astronaut in an orange suit",
    "scikit_camera.jpg": "a man with a camera on a tripod",
    "scikit_chelsea.jpg": "the face of a tabby cat",
    "scikit_china.jpg": "a pagoda above a lake",
    "scikit_hubble_deep_field.jpg": "a deep field of distant galaxies",
    "scikit_motorcycle_left.jpg": "a red motorcycle in a garage",
}
DEFAULT_SUBJECT = "the scene"
# Critique banks per field and tier ("high" overall or "low" overall); {subject} is filled in.
PCCD_FIELDS = {
    "general_impression": {
        "high": [
            "A strong image of {subject}; it holds the eye.",
            "Very pleasing overall, a careful picture of {subject}.",
            "A confident, well finished photograph.",
            "This works well; the picture feels calm and complete.",
        ],
        "low": [
            "The idea is there, but the picture does not come together.",
            "A snapshot of {subject} that lacks impact.",
            "It feels unfinished and fails to hold attention.",
            "Not much draws me in; the image feels ordinary.",
        ],
    },
    "subject_of_photo": {
        "high": [
            "Good choice of subject: {subject}, clearly the centre of interest.",
            "The subject, {subject}, is interesting and well chosen.",
            "Picking {subject} as the subject gives the picture a clear purpose.",
        ],
        "low": [
            "The subject, {subject}, is not distinctive enough to carry the frame.",
            "It is unclear why {subject} was worth a picture.",
            "The subject, {subject}, gets lost.",
        ],
    },
    "composition": {
        "high": [
            "The framing is balanced and leads the eye well.",
            "Good placement of the main elements, with room to breathe.",
            "The lines and shapes are arranged with care.",
        ],
        "low": [
            "The framing is awkward and the edges are cluttered.",
            "The main element sits in a weak position.",
            "Too much empty or busy space around the subject.",
        ],
    },
    "use_of_camera": {
        "high": [
            "Camera settings are well chosen for the scene.",
            "Technically clean; the settings suit the light.",
            "Good control of the camera throughout.",
        ],
        "low": [
            "The settings do not suit the scene.",
            "More care with the camera settings would help.",
            "Technically it is only average.",
        ],
    },
    "depth_of_field": {
        "high": [
            "Depth of field is well judged for the subject.",
            "The depth of field separates the subject nicely.",
            "Good choice of depth of field.",
        ],
        "low": [
            "The depth of field does not help the subject stand out.",
            "A different aperture would separate the subject better.",
            "The depth of field feels like an accident.",
        ],
    },
}
# Field texts chosen by a measured property of the clean image (z-score over the 36 PCCD images).
PCCD_MEASURED_FIELDS = {
    "color_lighting": (
        "saturation",
        {
            "up": ["Rich, saturated colours and good light.", "The colours are vivid and well lit."],
            "mid": ["Natural colours and even light.", "Balanced colour and pleasant lighting."],
            "down": ["A quiet, muted palette; the light is soft.", "Subdued colours give a calm mood."],
        },
    ),
    "focus": (
        "sharpness",
        {
            "up": ["Crisp focus with fine detail everywhere.", "Very sharp; the detail holds up well."],
            "mid": ["Focus is accurate on the subject.", "Sharp where it needs to be."],
            "down": ["Much of the frame is soft, by design or not.", "Focus is gentle; fine detail is limited."],
        },
    ),
}
PCCD_Z_CUT = 0.5  # |z| above this picks the "up"/"down" text, else "mid"

# ---------------------------------------------------------------------------------------------
# tiny-flickr-aes (personalized IAA)
# ---------------------------------------------------------------------------------------------
FLICKR_EDITS_PER_PHOTO = 3
FLICKR_BRIGHTNESS_RANGE = (0.55, 1.5)  # ImageEnhance.Brightness factor ~ U[...]
FLICKR_SATURATION_RANGE = (0.2, 1.8)  # ImageEnhance.Color factor ~ U[...]
FLICKR_CONTRAST_RANGE = (0.6, 1.4)  # ImageEnhance.Contrast factor ~ U[...]
FLICKR_DEFOCUS_PROB = 0.25  # probability of a defocus blur; otherwise severity 0
FLICKR_DEFOCUS_RANGE = (0.3, 0.8)  # defocus_blur severity ~ U[...] when applied
FLICKR_IMAGES_PER_WORKER = 110
FLICKR_TASTE_NOISE = 0.35  # raw = taste . z + 0.35 * N(0, 1)
FLICKR_SCORE_CUMSHARES = (0.10, 0.30, 0.65, 0.90)  # per-worker quantile cuts -> 10/20/35/25/10 %
PROPERTIES = ("luminance", "saturation", "contrast", "sharpness")
# Workers: (id, name, test?, raw taste weights over PROPERTIES); weights are L2-normalised before use.
WORKERS = (
    ("ABYSJPNNPZ7W7N", "bright_lover", True, (1.0, 0.2, 0.0, 0.3)),
    ("AKZKBPG6LSXJQW", "moody", True, (-0.8, 0.0, 0.7, 0.2)),
    ("ADNXNJZTZKG7C3", "saturated_lover", True, (0.1, 1.0, 0.1, 0.2)),
    ("A3QVYCFOKXWIJS", "muted_lover", False, (0.0, -1.0, -0.2, 0.2)),
    ("ARJ5KVSJZYF2DR", "sharpness_lover", True, (0.1, 0.1, 0.1, 1.0)),
    ("AAE2APGNH7C33K", "soft_lover", True, (0.2, 0.1, -0.3, -0.9)),
    ("AZX2RHJWOGGICP", "contrast_lover", False, (0.0, 0.2, 1.0, 0.2)),
    ("ADBG7SNWUDMW2R", "average", False, (0.35, 0.35, 0.3, 0.5)),
)


# ---------------------------------------------------------------------------------------------
# tiny-art (APDDv2 twin: artworks with a total score, ten attribute scores and descriptions)
# ---------------------------------------------------------------------------------------------
ART_EDITED_VARIANTS = 2  # variant 0 is the clean artwork; variants 1..2 get AVA-style edits
ART_SPLIT_PAINTINGS = {"abstract": (5, 2), "figurative": (7, 2)}  # (test, val) artworks per style; the rest train
ART_BASE_RANGE = (6.2, 7.8)  # base(artwork) ~ U[...] on the attributes' 0–10 scale
ART_OFFSET_RANGE = (-0.6, 0.6)  # each attribute's own offset for an artwork ~ U[...]
ART_GENERAL_PENALTY = 0.6  # per unit severity, on every attribute an edit kind does not name below
ART_PENALTIES = {  # per unit severity, on the attributes an edit kind hurts most
    "defocus_blur": {
        "details_and_texture": 4.0,
        "space_and_perspective": 2.5,
        "the_sense_of_order": 2.0,
        "the_overall": 2.0,
    },
    "motion_blur": {
        "details_and_texture": 3.5,
        "the_sense_of_order": 3.0,
        "layout_and_composition": 2.0,
        "the_overall": 2.0,
    },
    "gaussian_noise": {"details_and_texture": 3.0, "color": 2.5, "mood": 2.0, "the_overall": 2.0},
    "dark": {"light_and_shadow": 4.0, "color": 2.5, "mood": 3.0, "the_overall": 2.0},
    "bright": {"light_and_shadow": 4.0, "color": 3.0, "mood": 2.0, "the_overall": 2.0},
    "desaturated": {"color": 4.5, "mood": 3.0, "the_overall": 2.0},
    "jpeg": {"details_and_texture": 3.5, "color": 2.0, "the_overall": 2.0},
    "low_contrast": {"light_and_shadow": 3.0, "space_and_perspective": 3.0, "mood": 2.0, "the_overall": 2.0},
    "pixelate": {
        "details_and_texture": 4.0,
        "the_sense_of_order": 2.5,
        "layout_and_composition": 2.0,
        "the_overall": 2.0,
    },
}
ART_MEASURED = {
    "color": ("saturation", 0.4),
    "light_and_shadow": ("contrast", 0.4),
}  # attribute += weight * z(property)
ART_ATTRIBUTE_CLIP = (1.0, 10.0)  # attributes are clipped to this, then rounded to 2 decimals
ART_UNRATED = {"abstract": ("Space and perspective", "Light and shadow"), "figurative": ("Creativity",)}  # blank cells
ART_Z_CUT = 0.5  # sharpness z-score beyond which the perception text calls detail crisp / soft
# Each artwork's category (APDD's "medium*style*subject") and what it shows, looked up by eye once.
ART_WORKS = {
    "lomiri_Fossa_by_Jasper_Roks.jpg": ("digital art*abstract*patterns", "folded ribbons of violet and rose light"),
    "lomiri_Painting-Colors_by__herobrine7gamer.jpg": (
        "digital art*abstract*patterns",
        "broad diagonal bands of pink, red and blue",
    ),
    "lomiri_Picture_0B_by_freespace.jpg": ("photographic art*figurative*still life", "a halved fig in a red bowl"),
    "lomiri_Picture_1A_by_freespace.jpg": (
        "photographic art*figurative*still life",
        "a bunch of paint-stained brushes",
    ),
    "lomiri_analogpattern_by_Peter_Nerlich.jpg": (
        "digital art*abstract*textures",
        "a speckled field of green and violet",
    ),
    "lomiri_greentock_by_Peter_Nerlich.jpg": ("digital art*figurative*still life", "a grey clock face seen at a slant"),
    "lxqt_Valendas.jpg": ("photographic art*figurative*landscapes", "mountain ridges under heavy cloud"),
    "mate_YellowFlower.jpg": ("photographic art*figurative*flowers", "a yellow flower in close-up"),
    "opencv_HappyFish.jpg": ("illustration*figurative*animals", "a smiling cartoon fish blowing bubbles"),
    "opencv_starry_night.jpg": ("oil painting*figurative*landscapes", "a swirling night sky over a village"),
    "plasma_Autumn.jpg": ("illustration*figurative*landscapes", "a figure beneath an autumn tree"),
    "plasma_Cascade.jpg": ("digital art*abstract*patterns", "stepped terraces of pale blue and green"),
    "plasma_Cluster.jpg": ("digital art*abstract*patterns", "a hexagon mosaic dissolving into rose light"),
    "plasma_DarkestHour.jpg": ("digital art*figurative*landscapes", "a misty blue lake before dawn"),
    "plasma_FlyingKonqui.jpg": ("illustration*figurative*animals", "a green dragon flying over waves"),
    "plasma_IceCold.jpg": ("digital art*abstract*patterns", "ice floes on a blue ground"),
    "plasma_Kay.jpg": ("digital art*abstract*patterns", "crossing bands of turquoise and yellow"),
    "plasma_Kokkini.jpg": ("digital art*abstract*patterns", "a curved horizon of red and blue"),
    "plasma_Opal.jpg": ("digital art*abstract*patterns", "a faceted surface of blue and gold"),
    "plasma_PastelHills.jpg": ("digital art*abstract*landscapes", "low-polygon hills in pastel colours"),
    "plasma_SafeLanding.jpg": ("illustration*figurative*landscapes", "a rocket landed in a bright meadow"),
    "plasma_Volna.jpg": ("digital art*figurative*landscapes", "a wave breaking on sand, seen from above"),
    "plasma_summer_1am.jpg": ("digital art*figurative*landscapes", "a still lake under a violet sky"),
    "ukui_calla.jpg": ("illustration*figurative*flowers", "a calla lily before soft gradients"),
    "ukui_city.jpg": ("digital art*abstract*patterns", "two flat planes of teal and mint"),
    "ukui_firstgeneration.jpg": ("illustration*figurative*animals", "a masked dragon head on deep blue"),
    "ukui_fluent-color.jpg": ("digital art*abstract*patterns", "soft flowing folds of pink and blue"),
    "ukui_goldfish.jpg": ("illustration*figurative*animals", "a goldfish on a violet ground"),
    "ukui_rhythm.jpg": ("digital art*abstract*patterns", "a sweeping ribbon of red and teal"),
    "ukui_string.jpg": ("digital art*abstract*patterns", "a vortex of coloured strands"),
    "ukui_the-mouse.jpg": ("illustration*figurative*animals", "a glowing mouse face in the dark"),
}
# Words for the description templates.
ART_DAMAGE = {
    "defocus_blur": "blur",
    "motion_blur": "smearing",
    "gaussian_noise": "grain",
    "dark": "darkness",
    "bright": "glare",
    "desaturated": "loss of colour",
    "jpeg": "compression blocks",
    "low_contrast": "flatness",
    "pixelate": "pixelation",
}


# ---------------------------------------------------------------------------------------------
# Images
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Photo:
    file: str  # corpus file name (the key of every per-photo generator)
    image: Image.Image  # RGB, long side LONG_SIDE


def load_photos(corpus: Path, kind: str = "photo") -> list[Photo]:
    """The corpus rows of this kind (photo or art), sorted by file name, resized to LONG_SIDE."""
    with open(corpus / "SOURCES.csv", newline="") as f:
        files = sorted(row["file"] for row in csv.DictReader(f) if row["kind"] == kind)
    return [Photo(name, resize_long_side(Image.open(corpus / name).convert("RGB"))) for name in files]


def resize_long_side(img: Image.Image) -> Image.Image:
    """LANCZOS resize to LONG_SIDE; the result carries pixels only (no JPEG comment or other info
    from the source file, which Pillow would otherwise write back out)."""
    w, h = img.size
    scale = LONG_SIDE / max(w, h)
    resized = img.resize((max(1, round(w * scale)), max(1, round(h * scale))), Image.LANCZOS)
    return Image.fromarray(np.asarray(resized), "RGB")


def encode_jpeg(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=JPEG_QUALITY, subsampling="4:2:0", optimize=False)
    return buf.getvalue()


def measure(img: Image.Image) -> dict[str, float]:
    """Mean luminance, mean HSV saturation, RMS contrast and log Laplacian-variance sharpness.

    Deliberately not aesbench.measures: the workers' tastes are defined independently of the
    handcrafted baseline's features, so that baseline is not graded on its own definitions.
    """
    rgb = np.asarray(img, dtype=np.float64) / 255.0
    lum = rgb @ np.array([0.299, 0.587, 0.114])
    sat = np.asarray(img.convert("HSV"), dtype=np.float64)[..., 1] / 255.0
    return {
        "luminance": float(lum.mean()),
        "saturation": float(sat.mean()),
        "contrast": float(lum.std()),
        "sharpness": float(np.log(ndimage.laplace(lum).var() + 1e-6)),
    }


def zscores(props: list[dict[str, float]]) -> np.ndarray:
    """Rows = images, columns = PROPERTIES, each column standardised over the pool."""
    x = np.array([[p[k] for k in PROPERTIES] for p in props])
    return (x - x.mean(axis=0)) / x.std(axis=0)


def uniform(rng: np.random.Generator, bounds: tuple[float, float]) -> float:
    return round(float(rng.uniform(*bounds)), SEVERITY_DECIMALS)


def write_text(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8", newline="\n")


def write_bytes(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


def write_csv(path: Path, header: list[str], rows: list[list]) -> None:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    write_text(path, buf.getvalue())


def write_json(path: Path, obj) -> None:
    write_text(path, json.dumps(obj, indent=1, ensure_ascii=True) + "\n")


def spearman(a, b) -> float:
    return float(stats.spearmanr(a, b)[0])


# ---------------------------------------------------------------------------------------------
# tiny-ava
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class AvaItem:
    id: int
    source: str
    split: str  # test / val / train (captions); generic_test = test
    edits: tuple[tuple[str, float], ...]  # (kind, severity) applied in order; () for the clean one
    base: float
    counts: tuple[int, ...]  # votes for ratings 1..10

    @property
    def penalty(self) -> float:
        return ava_penalty(self.edits)

    @property
    def target(self) -> float:
        return ava_target(self.base, self.edits)

    @property
    def mos(self) -> float:
        return sum(i * n for i, n in enumerate(self.counts, 1)) / sum(self.counts)


def ava_penalty(edits: tuple[tuple[str, float], ...]) -> float:
    return AVA_PENALTY_PER_SEVERITY * sum(severity for _, severity in edits)


def ava_target(base: float, edits: tuple[tuple[str, float], ...]) -> float:
    return float(np.clip(base - ava_penalty(edits), *AVA_TARGET_CLIP))


def ava_splits(photos: list[Photo]) -> dict[str, str]:
    """Seeded shuffle of the photos: first AVA_TEST_PHOTOS test, next AVA_VAL_PHOTOS val, rest train."""
    order = item_rng(SEED, "ava/split").permutation(len(photos))
    split = {}
    for rank, index in enumerate(order):
        name = "test" if rank < AVA_TEST_PHOTOS else "val" if rank < AVA_TEST_PHOTOS + AVA_VAL_PHOTOS else "train"
        split[photos[index].file] = name
    return split


def draw_ava_edits(rng: np.random.Generator) -> tuple[tuple[str, float], ...]:
    """One kind, or with AVA_TWO_EDIT_PROB two distinct compatible kinds, each with its severity."""
    n = 2 if rng.random() < AVA_TWO_EDIT_PROB else 1
    while True:
        kinds = [str(k) for k in rng.choice(AVA_KINDS, size=n, replace=False)]
        if not any(pair <= set(kinds) for pair in AVA_EXCLUSIVE_PAIRS):
            break
    return tuple((k, uniform(rng, AVA_SEVERITY_RANGE)) for k in kinds)


def vote_counts(target: float, voters: int) -> tuple[int, ...]:
    """Largest-remainder rounding of voters * P(rating i), P from N(target, sd) integrated over
    [i - 0.5, i + 0.5] with the tails folded into ratings 1 and 10; ties go to the lower rating."""
    edges = np.concatenate([[-np.inf], np.arange(1.5, 10.5), [np.inf]])
    probs = np.diff(stats.norm.cdf(edges, loc=target, scale=AVA_VOTE_SD))
    expected = voters * probs
    counts = np.floor(expected).astype(int)
    remainders = expected - counts
    for i in np.argsort(-remainders, kind="stable")[: voters - counts.sum()]:
        counts[i] += 1
    return tuple(int(c) for c in counts)


def build_ava(photos: list[Photo], out: Path) -> list[AvaItem]:
    split = ava_splits(photos)
    items = []
    for p, photo in enumerate(photos):
        base = float(item_rng(SEED, f"ava/base/{photo.file}").uniform(*AVA_BASE_RANGE))
        for v in range(1 + AVA_EDITED_VARIANTS):
            image_id = AVA_FIRST_ID + (1 + AVA_EDITED_VARIANTS) * p + v
            img, edits = photo.image, ()
            if v > 0:
                rng = item_rng(SEED, f"ava/edit/{photo.file}/{v}")
                edits = draw_ava_edits(rng)
                for kind, severity in edits:
                    img = degrade(img, kind, severity, rng)
            write_bytes(out / "images" / f"{image_id}.jpg", encode_jpeg(img))
            voters = int(
                item_rng(SEED, f"ava/voters/{image_id}").integers(AVA_VOTERS_RANGE[0], AVA_VOTERS_RANGE[1] + 1)
            )
            counts = vote_counts(ava_target(base, edits), voters)
            items.append(AvaItem(image_id, photo.file, split[photo.file], edits, base, counts))
    write_ava_labels(items, out)
    write_captions(items, out)
    return items


def write_ava_labels(items: list[AvaItem], out: Path) -> None:
    lines = [
        " ".join(map(str, [index, it.id, *it.counts, *AVA_TAGS, AVA_CHALLENGE_ID])) for index, it in enumerate(items, 1)
    ]
    write_text(out / "AVA.txt", "\n".join(lines) + "\n")
    test_ids = [str(it.id) for it in items if it.split == "test"]
    write_text(out / "aesthetics_image_lists" / "generic_test.jpgl", "\n".join(test_ids) + "\n")
    write_csv(
        out / "edits.csv",
        ["id", "source", "split", "edits", "base", "penalty", "target", "voters", "mos"],
        [
            [
                it.id,
                it.source,
                it.split,
                ";".join(f"{k}:{s:.3f}" for k, s in it.edits),
                f"{it.base:.4f}",
                f"{it.penalty:.4f}",
                f"{it.target:.4f}",
                sum(it.counts),
                f"{it.mos:.4f}",
            ]
            for it in items
        ],
    )


def pick(rng: np.random.Generator, options) -> str:
    return options[int(rng.integers(len(options)))]


def comment(rng: np.random.Generator, edits: tuple[tuple[str, float], ...]) -> str:
    """One comment naming every edit (or praising a clean image), from the phrase banks."""
    if not edits:
        return pick(rng, CLEAN_TEMPLATES).format(**{k: pick(rng, v) for k, v in PRAISE.items()})
    banks = [EDIT_PHRASES[kind] for kind, _ in edits]
    if len(banks) == 1:
        fields = {field: pick(rng, banks[0][bank]) for field, bank in TEMPLATE_FIELDS.items()}
        return pick(rng, ONE_EDIT_TEMPLATES).format(**fields)
    fields = {
        f"{field}_{tag}": pick(rng, phrases[bank])
        for tag, phrases in zip("ab", banks)
        for field, bank in TEMPLATE_FIELDS.items()
    }
    return pick(rng, TWO_EDIT_TEMPLATES).format(**fields)


def image_comments(image_id: int, edits: tuple[tuple[str, float], ...]) -> list[str]:
    """CAPTIONS_PER_IMAGE distinct comments (redrawn on duplicates)."""
    rng = item_rng(SEED, f"ava/captions/{image_id}")
    comments: list[str] = []
    while len(comments) < CAPTIONS_PER_IMAGE:
        text = comment(rng, edits)
        if text not in comments:
            comments.append(text)
    return comments


def tokens(text: str) -> list[str]:
    return re.findall(r"[a-z0-9']+", text.lower())


def write_captions(items: list[AvaItem], out: Path) -> None:
    images, sentid = [], 0
    for imgid, it in enumerate(items):
        sentences = []
        for raw in image_comments(it.id, it.edits):
            sentences.append({"raw": raw, "tokens": tokens(raw), "imgid": imgid, "sentid": sentid})
            sentid += 1
        images.append(
            {
                "filename": f"{it.id}.jpg",
                "imgid": imgid,
                "split": it.split,
                "sentids": [s["sentid"] for s in sentences],
                "sentences": sentences,
            }
        )
    write_json(out / "ava_captions.json", {"images": images})


# ---------------------------------------------------------------------------------------------
# tiny-pccd
# ---------------------------------------------------------------------------------------------
def build_pccd(photos: list[Photo], out: Path) -> list[dict]:
    rng = item_rng(SEED, "pccd/select")
    chosen = sorted(rng.choice(len(photos), size=PCCD_IMAGES, replace=False))
    low = set(int(i) for i in rng.choice(PCCD_IMAGES, size=PCCD_LOW, replace=False))
    props = [measure(photos[i].image) for i in chosen]
    z = zscores(props)
    records, sources = [], []
    for n, index in enumerate(chosen):
        photo, stem = photos[index], f"pccd_{n + 1:03d}"
        write_bytes(out / "images" / f"{stem}.jpg", encode_jpeg(photo.image))
        tier = "low" if n in low else "high"
        records.append(pccd_record(stem, photo.file, tier, dict(zip(PROPERTIES, z[n]))))
        sources.append([stem, photo.file])
    write_json(out / "pccd.json", records)
    write_csv(out / "sources.csv", ["title", "source"], sources)
    return records


def pccd_record(stem: str, source: str, tier: str, z: dict[str, float]) -> dict:
    rng = item_rng(SEED, f"pccd/record/{source}")
    overall = round(float(rng.uniform(*(PCCD_LOW_RANGE if tier == "low" else PCCD_HIGH_RANGE))), 2)
    subject = SUBJECTS.get(source, DEFAULT_SUBJECT)
    fields = {name: pick(rng, banks[tier]).format(subject=subject) for name, banks in PCCD_FIELDS.items()}
    for name, (prop, banks) in PCCD_MEASURED_FIELDS.items():
        level = "up" if z[prop] > PCCD_Z_CUT else "down" if z[prop] < -PCCD_Z_CUT else "mid"
        fields[name] = pick(rng, banks[level])
    description = f"A photo of {subject}. {fields['general_impression']} {fields['composition']}"
    return {
        "title": stem,
        "overall": overall,
        "description": description,
        **{
            k: fields[k]
            for k in (
                "general_impression",
                "subject_of_photo",
                "composition",
                "use_of_camera",
                "depth_of_field",
                "color_lighting",
                "focus",
            )
        },
    }


# ---------------------------------------------------------------------------------------------
# tiny-flickr-aes
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class FlickrItem:
    name: str
    source: str
    brightness: float
    saturation: float
    contrast: float
    defocus: float
    props: dict


def flickr_edit(img: Image.Image, rng: np.random.Generator) -> tuple[Image.Image, tuple[float, ...]]:
    """Defocus blur (sometimes), then brightness, contrast and colour factors, in that order."""
    brightness = uniform(rng, FLICKR_BRIGHTNESS_RANGE)
    saturation = uniform(rng, FLICKR_SATURATION_RANGE)
    contrast = uniform(rng, FLICKR_CONTRAST_RANGE)
    defocus = uniform(rng, FLICKR_DEFOCUS_RANGE) if rng.random() < FLICKR_DEFOCUS_PROB else 0.0
    if defocus > 0:
        img = degrade(img, "defocus_blur", defocus, rng)
    img = ImageEnhance.Brightness(img).enhance(brightness)
    img = ImageEnhance.Contrast(img).enhance(contrast)
    img = ImageEnhance.Color(img).enhance(saturation)
    return img, (brightness, saturation, contrast, defocus)


def build_flickr_images(photos: list[Photo], out: Path) -> list[FlickrItem]:
    items = []
    for p, photo in enumerate(photos):
        for v in range(FLICKR_EDITS_PER_PHOTO):
            name = f"farm1_tiny_{FLICKR_EDITS_PER_PHOTO * p + v + 1:04d}.jpg"
            img, params = flickr_edit(photo.image, item_rng(SEED, f"flickr/edit/{photo.file}/{v}"))
            data = encode_jpeg(img)
            write_bytes(out / "images" / name, data)
            # Properties are measured on the decoded file, i.e. exactly what a reader will see.
            items.append(FlickrItem(name, photo.file, *params, measure(Image.open(io.BytesIO(data)).convert("RGB"))))
    return items


def worker_tastes() -> np.ndarray:
    w = np.array([taste for *_, taste in WORKERS], dtype=np.float64)
    return w / np.linalg.norm(w, axis=1, keepdims=True)


def rate(worker_id: str, utility: np.ndarray) -> dict[int, int]:
    """A worker's sample of images and their 1..5 scores: rank cuts at the worker's own quantiles."""
    rng = item_rng(SEED, f"flickr/worker/{worker_id}")
    sample = np.sort(rng.choice(len(utility), size=FLICKR_IMAGES_PER_WORKER, replace=False))
    raw = utility[sample] + FLICKR_TASTE_NOISE * rng.standard_normal(len(sample))
    ranks = np.argsort(np.argsort(raw, kind="stable"), kind="stable")
    cuts = [round(share * len(sample)) for share in FLICKR_SCORE_CUMSHARES]
    return {int(i): 1 + sum(int(r >= c) for c in cuts) for i, r in zip(sample, ranks)}


def build_flickr(photos: list[Photo], out: Path) -> dict:
    items = build_flickr_images(photos, out)
    z = zscores([it.props for it in items])
    utility = z @ worker_tastes().T  # images x workers, noise-free taste . z
    ratings = {wid: rate(wid, utility[:, w]) for w, (wid, *_) in enumerate(WORKERS)}
    rows = [[wid, items[i].name, score] for wid in sorted(ratings) for i, score in sorted(ratings[wid].items())]
    write_text(
        out / "FLICKR-AES_image_labeled_by_each_worker.csv",
        "worker, imagePair, score\n" + "".join(f"{w}, {n}, {s}\n" for w, n, s in rows),
    )
    rated = sorted({i for r in ratings.values() for i in r})
    means = {i: float(np.mean([r[i] for r in ratings.values() if i in r])) for i in rated}
    write_text(out / "FLICKR-AES_image_score.txt", "".join(f"{items[i].name} {means[i]:.6f}\n" for i in sorted(means)))
    write_text(out / "test_workers.txt", "".join(f"{wid}\n" for wid, _, test, _ in WORKERS if test))
    header = [
        "name",
        "source",
        "brightness_factor",
        "colour_factor",
        "contrast_factor",
        "defocus_severity",
        *(f"measured_{k}" for k in PROPERTIES),
    ]
    write_csv(
        out / "edits.csv",
        header,
        [
            [
                it.name,
                it.source,
                *(f"{x:.3f}" for x in (it.brightness, it.saturation, it.contrast, it.defocus)),
                *(f"{it.props[k]:.5f}" for k in PROPERTIES),
            ]
            for it in items
        ],
    )
    return {"items": items, "ratings": ratings, "means": means, "utility": utility}


# ---------------------------------------------------------------------------------------------
# tiny-art
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ArtItem:
    name: str
    source: str
    split: str
    edits: tuple[tuple[str, float], ...]
    props: dict  # measured on the decoded output JPEG
    z: dict  # those properties' z-scores over the tiny-art images
    attributes: dict  # attribute key -> score (0–10, 2 decimals); unrated ones absent
    total: float  # 10 x mean of the rated attributes, 2 decimals
    comment: str

    @property
    def damage(self) -> float:
        return sum(severity for _, severity in self.edits)


def art_style(source: str) -> str:
    """abstract or figurative: the middle part of the artwork's category."""
    return ART_WORKS[source][0].split("*")[1]


def art_splits(works: list[Photo]) -> dict[str, str]:
    """Per style, a seeded shuffle of its artworks: the first ones test, the next val, the rest train."""
    split = {}
    for style, (n_test, n_val) in ART_SPLIT_PAINTINGS.items():
        files = [w.file for w in works if art_style(w.file) == style]
        for rank, index in enumerate(item_rng(SEED, f"art/split/{style}").permutation(len(files))):
            split[files[index]] = "test" if rank < n_test else "val" if rank < n_test + n_val else "train"
    return split


def art_attributes(source: str, edits, z: dict[str, float]) -> dict[str, float]:
    """base + own offset − edit penalties + measured terms, clipped and rounded; unrated attributes left out."""
    rng = item_rng(SEED, f"art/base/{source}")
    base = float(rng.uniform(*ART_BASE_RANGE))
    offsets = rng.uniform(*ART_OFFSET_RANGE, size=len(APDD_ATTRIBUTES))
    unrated = ART_UNRATED[art_style(source)]
    values = {}
    for column, offset in zip(APDD_ATTRIBUTES, offsets):
        key = attribute_key(column)
        value = (
            base
            + offset
            - sum(severity * ART_PENALTIES[kind].get(key, ART_GENERAL_PENALTY) for kind, severity in edits)
        )
        if key in ART_MEASURED:
            prop, weight = ART_MEASURED[key]
            value += weight * z[prop]
        if column not in unrated:
            values[key] = round(float(np.clip(value, *ART_ATTRIBUTE_CLIP)), 2)
    return values


def build_art(works: list[Photo], out: Path) -> list[ArtItem]:
    split = art_splits(works)
    drafts = []  # (name, source, edits, props) before the labels, which need z-scores over all images
    for p, work in enumerate(works):
        for v in range(1 + ART_EDITED_VARIANTS):
            name, img, edits = f"art_{p + 1:02d}_{v}.jpg", work.image, ()
            if v > 0:
                rng = item_rng(SEED, f"art/edit/{work.file}/{v}")
                edits = draw_ava_edits(rng)
                for kind, severity in edits:
                    img = degrade(img, kind, severity, rng)
            data = encode_jpeg(img)
            write_bytes(out / "images" / name, data)
            drafts.append((name, work.file, edits, measure(Image.open(io.BytesIO(data)).convert("RGB"))))
    z = zscores([props for *_, props in drafts])
    items = []
    for (name, source, edits, props), zrow in zip(drafts, z):
        zs = dict(zip(PROPERTIES, (float(x) for x in zrow)))
        attributes = art_attributes(source, edits, zs)
        total = round(10.0 * float(np.mean(list(attributes.values()))), 2)
        text = comment(item_rng(SEED, f"art/comment/{name}"), edits) if edits else ""
        items.append(ArtItem(name, source, split[source], edits, props, zs, attributes, total, text))
    write_art_labels(items, out)
    write_art_descriptions(items, out)
    return items


def number(x: float, decimals: int) -> str:
    """As APDD writes numbers: at most `decimals` decimals, no trailing zeros (65.83, 6.2, 7)."""
    return f"{x:.{decimals}f}".rstrip("0").rstrip(".")


def write_art_labels(items: list[ArtItem], out: Path) -> None:
    keys = [attribute_key(c) for c in APDD_ATTRIBUTES]

    def cells(it: ArtItem) -> list[str]:
        return [number(it.attributes[k], 2) if k in it.attributes else "" for k in keys]

    write_csv(
        out / "APDDv2-tiny.csv",
        ["filename", "Artistic Categories", APDD_TOTAL, *APDD_ATTRIBUTES, "Language Comment"],
        [[it.name, ART_WORKS[it.source][0], number(it.total, 2), *cells(it), it.comment] for it in items],
    )
    for split, file in (("train", "train.csv"), ("val", "valid.csv"), ("test", "test.csv")):  # ArtCLIP's split files
        write_csv(
            out / "csvfiles" / file,
            ["filename", "Artistic Categories", "Score", *APDD_ATTRIBUTES],
            [
                [it.name, ART_WORKS[it.source][0], number(it.total / 10, 3), *cells(it)]
                for it in items
                if it.split == split
            ],
        )
    write_csv(
        out / "edits.csv",
        ["filename", "source", "split", "edits", "damage", *(f"measured_{k}" for k in PROPERTIES)],
        [
            [
                it.name,
                it.source,
                it.split,
                ";".join(f"{k}:{s:.3f}" for k, s in it.edits),
                f"{it.damage:.3f}",
                *(f"{it.props[k]:.5f}" for k in PROPERTIES),
            ]
            for it in items
        ],
    )


def art_perception(it: ArtItem, rng: np.random.Generator) -> str:
    lum, sat, contrast = it.props["luminance"], it.props["saturation"], it.props["contrast"]
    tone = "dark overall" if lum < 0.35 else "light overall" if lum > 0.6 else "evenly mid-toned"
    colour = "vivid, saturated colour" if sat > 0.5 else "muted, nearly grey colour" if sat < 0.2 else "moderate colour"
    strength = "strong" if contrast > 0.25 else "soft and flat" if contrast < 0.12 else "moderate"
    detail = (
        "edges and fine detail are crisp"
        if it.z["sharpness"] > ART_Z_CUT
        else "edges and fine detail are soft"
        if it.z["sharpness"] < -ART_Z_CUT
        else "detail is moderately sharp"
    )
    text = (
        f"The image is {tone} (mean luminance {lum:.2f}) with {colour} (mean saturation {sat:.2f}). "
        f"Contrast is {strength} (RMS {contrast:.2f}), and {detail}."
    )
    if not it.edits:
        return text + " No damage is visible."
    states = [pick(rng, EDIT_PHRASES[kind]["states"]) for kind, _ in it.edits]
    return text + f" The picture is {' and '.join(states)}."


def art_cognition(it: ArtItem) -> str:
    medium, style, _ = ART_WORKS[it.source][0].split("*")
    text = f"A work of {medium} in {'an' if style[0] in 'aeiou' else 'a'} {style} manner, showing {ART_WORKS[it.source][1]}."
    if not it.edits:
        return text + " The forms read clearly, so the intent of the design comes across."
    damage = " and ".join(ART_DAMAGE[kind] for kind, _ in it.edits)
    verbs = "obscures the design and makes" if len(it.edits) == 1 else "obscure the design and make"
    return text + f" The {damage} {verbs} its intent harder to read."


def art_emotion(it: ArtItem) -> str:
    lum, sat = it.props["luminance"], it.props["saturation"]
    mood_word = (
        "sombre and quiet"
        if lum < 0.35
        else "calm and wistful"
        if sat < 0.2
        else "cheerful and lively"
        if lum > 0.5 and sat > 0.35
        else "calm and pleasant"
    )
    mood = it.attributes["mood"]
    if mood >= 7:
        return f"It feels {mood_word} and draws the viewer in."
    if mood >= 5:
        return f"It feels {mood_word}, though the effect is muted."
    return f"It leaves the viewer cold; whatever {mood_word} mood it aimed for is lost."


def write_art_descriptions(items: list[ArtItem], out: Path) -> None:
    header = {
        FORMAT_KEY: FORMAT_VERSION,
        "source": "tiny-art (every image, all splits)",
        "levels": list(LEVELS),
        "rounds": 0,
        "prompts": None,
        "seed": SEED,
        "score_range": [0, 100],
        "model": {
            "name": "template",
            "made_by": "tools/build_tiny_splits.py",
            "rules": "tasks/data/README.md, tiny-art",
        },
    }
    lines = [header]
    for it in items:
        rng = item_rng(SEED, f"art/describe/{it.name}")
        lines.append(
            {
                "id": it.name,
                "perception": art_perception(it, rng),
                "cognition": art_cognition(it),
                "emotion": art_emotion(it),
                "score": it.total,
                "score_sentence": score_sentence(it.total, (0.0, 100.0)),
            }
        )
    write_text(out / "descriptions.jsonl", "".join(json.dumps(line, ensure_ascii=True) + "\n" for line in lines))


# ---------------------------------------------------------------------------------------------
# Sanity figures (written into the README)
# ---------------------------------------------------------------------------------------------
def ava_sanity(items: list[AvaItem]) -> str:
    test = [it for it in items if it.split == "test"]
    lines = [
        f"- Spearman(-penalty, MOS), test ids (n={len(test)}): "
        f"{spearman([-it.penalty for it in test], [it.mos for it in test]):.3f}; "
        f"all ids (n={len(items)}): {spearman([-it.penalty for it in items], [it.mos for it in items]):.3f}",
        f"- Pearson(target, MOS), all ids: {np.corrcoef([it.target for it in items], [it.mos for it in items])[0, 1]:.4f}",
        "",
        "| penalty | images | mean MOS | min MOS | max MOS |",
        "|---|---|---|---|---|",
    ]
    for lo, hi in ((0, 0), (0, 1), (1, 2), (2, 3), (3, 4.5), (4.5, 99)):
        sel = [it.mos for it in items if (it.penalty == 0 if hi == 0 else lo < it.penalty <= hi)]
        label = "0 (clean)" if hi == 0 else f"({lo}, {hi}]" if hi < 99 else f"> {lo}"
        if sel:
            lines.append(f"| {label} | {len(sel)} | {np.mean(sel):.2f} | {min(sel):.2f} | {max(sel):.2f} |")
    return "\n".join(lines)


def flickr_sanity(flickr: dict) -> str:
    ratings, means, utility = flickr["ratings"], flickr["means"], flickr["utility"]
    lines = [
        "| worker | taste | SRCC vs mean score | SRCC vs mean of other workers | SRCC vs own taste |",
        "|---|---|---|---|---|",
    ]
    for w, (wid, name, test, _) in enumerate(WORKERS):
        if not test:
            continue
        own = ratings[wid]
        idx = sorted(own)
        others = {i: [r[i] for v, r in ratings.items() if v != wid and i in r] for i in idx}
        shared = [i for i in idx if others[i]]
        lines.append(
            f"| {wid} | {name} | {spearman([own[i] for i in idx], [means[i] for i in idx]):.3f} | "
            f"{spearman([own[i] for i in shared], [np.mean(others[i]) for i in shared]):.3f} | "
            f"{spearman([own[i] for i in idx], utility[idx, w]):.3f} |"
        )
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------
# README
# ---------------------------------------------------------------------------------------------
def art_sanity(items: list[ArtItem]) -> str:
    test = [it for it in items if it.split == "test"]
    lines = [
        f"- Spearman(−damage, total), test images (n={len(test)}): "
        f"{spearman([-it.damage for it in test], [it.total for it in test]):.3f}; "
        f"all images (n={len(items)}): {spearman([-it.damage for it in items], [it.total for it in items]):.3f}",
        "",
        "| damage (Σ severity) | images | mean total | min total | max total |",
        "|---|---|---|---|---|",
    ]
    for lo, hi in ((0, 0), (0, 0.5), (0.5, 1), (1, 1.5), (1.5, 99)):
        sel = [it.total for it in items if (it.damage == 0 if hi == 0 else lo < it.damage <= hi)]
        label = "0 (clean)" if hi == 0 else f"({lo}, {hi}]" if hi < 99 else f"> {lo}"
        if sel:
            lines.append(f"| {label} | {len(sel)} | {np.mean(sel):.2f} | {min(sel):.2f} | {max(sel):.2f} |")
    lines += ["", "| attribute | rated images | mean | Spearman with total |", "|---|---|---|---|"]
    for column in APDD_ATTRIBUTES:
        rated = [it for it in items if attribute_key(column) in it.attributes]
        values = [it.attributes[attribute_key(column)] for it in rated]
        lines.append(
            f"| {column} | {len(rated)} | {np.mean(values):.2f} | {spearman(values, [it.total for it in rated]):.3f} |"
        )
    return "\n".join(lines)


def pccd_sanity(records: list[dict]) -> str:
    overall = sorted((r["overall"] for r in records), reverse=True)
    keep = PCCD_IMAGES - PCCD_LOW
    return (
        f"Sanity: the {keep}th highest overall is {overall[keep - 1]:.2f}, the highest of the other "
        f"{PCCD_LOW} is {overall[keep]:.2f}."
    )


def write_readme(
    out: Path, n_photos: int, ava: list[AvaItem], pccd: list[dict], flickr: dict, art: list[ArtItem]
) -> None:
    tastes = worker_tastes()
    worker_rows = "\n".join(
        f"| {wid} | {name} | {'test' if test else 'train'} | " + " | ".join(f"{x:+.3f}" for x in tastes[w]) + " |"
        for w, (wid, name, test, _) in enumerate(WORKERS)
    )
    splits = {s: sum(it.split == s for it in ava) for s in ("test", "val", "train")}
    art_counts = {s: sum(it.split == s for it in art) for s in ("test", "val", "train")}
    n_art = len(art) // (1 + ART_EDITED_VARIANTS)
    penalty_rows = "\n".join(
        f"| {kind} | " + ", ".join(f"{k} {w}" for k, w in hits.items()) + " |" for kind, hits in ART_PENALTIES.items()
    )
    text = f"""# Tiny dataset twins (generated — do not edit by hand)

Generated by `tools/build_tiny_splits.py --corpus <shared corpus> --out tasks/data`, deterministically
(seed {SEED}). **The labels below are synthetic. They test the benchmark machinery (readers, splits,
metrics, protocols) and are NOT human ratings or human critiques.** Numbers obtained on these files
say nothing about a model's real aesthetic ability.

## Source images

The {n_photos} corpus rows with `kind=photo` for tiny-ava, tiny-pccd and tiny-flickr-aes, and the
{n_art} rows with `kind=art` for tiny-art, each sorted by file name. `SOURCES.csv` is the corpus file
copied unchanged; it gives each image's origin and licence. Each image is converted to RGB and
resized with `Image.LANCZOS` so its long side is {LONG_SIDE} px, then edited. Every output JPEG is saved with Pillow at quality {JPEG_QUALITY},
4:2:0 subsampling, no EXIF, no comment or other metadata (JPEG comments of the corpus files,
some of them credits, are dropped; SOURCES.csv carries the attribution).

Randomness: every draw comes from `aesbench.degradations.item_rng({SEED}, key)` (SHA-256 of
`"{SEED}:key"` seeds a numpy PCG64 generator); the keys are named below. Edit severities and factors
are rounded to {SEVERITY_DECIMALS} decimals before they are applied, so the recorded values are exact.
All damage edits go through `aesbench.degradations.degrade(img, kind, severity, rng)`.

## tiny-ava (AVA + AVA-Captions twin)

Files: `images/<id>.jpg`, `AVA.txt`, `aesthetics_image_lists/generic_test.jpgl`, `ava_captions.json`,
and `edits.csv` (provenance: source photo, split, edits, base, penalty, target, voters, MOS per id).

- Ids: photo number p (0-based, sorted order) and variant v give id = {AVA_FIRST_ID} + 3p + v.
  Variant 0 is the clean resized photo; variants 1 and 2 are edited ({len(ava)} images).
- Edits (generator key `ava/edit/<file>/<v>`): with probability {AVA_TWO_EDIT_PROB} two distinct kinds,
  else one, drawn uniformly from {", ".join(AVA_KINDS)} (the pair dark+bright is redrawn);
  each severity ~ U[{AVA_SEVERITY_RANGE[0]}, {AVA_SEVERITY_RANGE[1]}]; kinds are applied in the order drawn,
  with the same generator.
- base(photo) ~ U[{AVA_BASE_RANGE[0]}, {AVA_BASE_RANGE[1]}] (key `ava/base/<file>`), shared by the photo's 3 images.
- penalty = {AVA_PENALTY_PER_SEVERITY} × Σ severity over applied edits (0 for clean images).
- target = clip(base − penalty, {AVA_TARGET_CLIP[0]}, {AVA_TARGET_CLIP[1]}).
- Voters N ~ integer U[{AVA_VOTERS_RANGE[0]}, {AVA_VOTERS_RANGE[1]}] (key `ava/voters/<id>`).
- P(rating i) = Φ((i + 0.5 − target)/{AVA_VOTE_SD}) − Φ((i − 0.5 − target)/{AVA_VOTE_SD}) for i = 1..10, with
  rating 1 taking everything below 1.5 and rating 10 everything above 9.5. Counts = N·P rounded by the
  largest-remainder method (floors, then +1 to the largest fractional parts, ties to the lower
  rating), so they sum to N. There is no other noise: the label is the histogram's MOS = Σ i·nᵢ / Σ nᵢ.
- `AVA.txt`: `index id n1 … n10 tag1 tag2 challenge`, index 1-based in id order, tags `{AVA_TAGS[0]} {AVA_TAGS[1]}`,
  challenge `{AVA_CHALLENGE_ID}`, no header.
- Split by source photo (key `ava/split`: a permutation of the sorted photos): the first
  {AVA_TEST_PHOTOS} photos are test ({splits["test"]} ids, listed in `generic_test.jpgl` in id order),
  the next {AVA_VAL_PHOTOS} are val ({splits["val"]} ids), the rest train ({splits["train"]} ids).
  Val and train ids are AVA training images; only the captions file marks val.
- `ava_captions.json` (Karpathy/COCO style): one entry per id in id order, imgid = 0-based position,
  sentid running over all sentences; {CAPTIONS_PER_IMAGE} distinct comments per image (key `ava/captions/<id>`).
  Clean images get praise of focus, exposure and colour; edited images get comments that name the
  edit (both edits when there are two) from a phrase bank per kind (complete sentences, "the photo is
  ___" phrases and advice, at least five each) put into sentence templates (see the script's
  `EDIT_PHRASES`, `PRAISE` and `*_TEMPLATES`). Tokens = `re.findall(r"[a-z0-9']+", raw.lower())`.

Sanity figures (vote MOS against edit penalty):

{ava_sanity(ava)}

## tiny-pccd (PCCD twin for the suggest task)

Files: `images/pccd_NNN.jpg`, `pccd.json`, and `sources.csv` (provenance: title → source photo).

- {PCCD_IMAGES} photos chosen without replacement (key `pccd/select`), numbered in sorted file order;
  images are the CLEAN resized photos (the suggest task degrades them at evaluation time).
- From the same generator, {PCCD_LOW} of the {PCCD_IMAGES} get overall ~ U[{PCCD_LOW_RANGE[0]}, {PCCD_LOW_RANGE[1]}];
  the other {PCCD_IMAGES - PCCD_LOW} get overall ~ U[{PCCD_HIGH_RANGE[0]}, {PCCD_HIGH_RANGE[1]}] (rounded to 2 decimals,
  key `pccd/record/<file>`), so a top-{PCCD_IMAGES - PCCD_LOW}-by-overall rule keeps exactly the high ones.
- Critique texts are template-made (key `pccd/record/<file>`): general_impression, subject_of_photo,
  composition, use_of_camera and depth_of_field are picked from a bank for the image's tier (high or
  low); the subject phrase was written by looking at each corpus photo once (`SUBJECTS`).
  color_lighting and focus are picked by the image's measured saturation and sharpness z-scores
  over the {PCCD_IMAGES} images (> {PCCD_Z_CUT}: "up" text, < −{PCCD_Z_CUT}: "down", else "mid").
  description = "A photo of <subject>. <general_impression> <composition>".
  The critiques do not describe real defects of these photos.

{pccd_sanity(pccd)}

## tiny-flickr-aes (FLICKR-AES twin for personalized IAA)

Files: `images/farm1_tiny_NNNN.jpg`, `FLICKR-AES_image_labeled_by_each_worker.csv`
(header `worker, imagePair, score`, rows `WORKER, file, score`, sorted by worker then file),
`FLICKR-AES_image_score.txt` (`<file> <mean over the workers who rated it, 6 decimals>`),
`test_workers.txt` (test worker ids), and `edits.csv` (provenance: source, edit parameters, measured properties).

- Each photo p (sorted) gives {FLICKR_EDITS_PER_PHOTO} images, numbered {FLICKR_EDITS_PER_PHOTO}p + v + 1 (key `flickr/edit/<file>/<v>`):
  brightness factor ~ U{FLICKR_BRIGHTNESS_RANGE}, colour (saturation) factor ~ U{FLICKR_SATURATION_RANGE},
  contrast factor ~ U{FLICKR_CONTRAST_RANGE}; with probability {FLICKR_DEFOCUS_PROB} a defocus blur of severity
  ~ U{FLICKR_DEFOCUS_RANGE}, else none. Applied in the order: `degrade(…, "defocus_blur", …)`, then PIL
  `ImageEnhance.Brightness`, `.Contrast`, `.Color`.
- Properties measured on each decoded output JPEG: luminance = mean of Y = 0.299R + 0.587G + 0.114B
  (RGB in [0, 1]); saturation = mean HSV S (Pillow, /255); contrast = standard deviation of Y (RMS
  contrast); sharpness = ln(var(scipy.ndimage.laplace(Y)) + 1e-6). Each is standardised (z-score,
  population sd) over the {len(flickr["items"])} images.
- Worker w has a taste vector t_w over (luminance, saturation, contrast, sharpness), L2-normalised.
  Each worker rates {FLICKR_IMAGES_PER_WORKER} images drawn without replacement (key `flickr/worker/<id>`);
  raw = t_w · z + {FLICKR_TASTE_NOISE} · N(0, 1) (same generator); scores 1..5 by the worker's own rank
  cuts at cumulative shares {FLICKR_SCORE_CUMSHARES} (about 10/20/35/25/10 %).

| worker | taste | role | luminance | saturation | contrast | sharpness |
|---|---|---|---|---|---|---|
{worker_rows}

Sanity figures, test workers (SRCC of a worker's scores against: the FLICKR-AES mean score, which
includes their own score; the mean of the other workers only; their own noise-free taste t_w · z):

{flickr_sanity(flickr)}

## tiny-art (APDDv2 twin: artworks with attribute scores and hierarchical descriptions)

The scores, attribute scores, comments and descriptions below are synthetic: rules of the edits and
of measured image properties, not judgements of these artworks by anyone.

Files, in APDDv2's own layouts: `images/art_PP_V.jpg`, `APDDv2-tiny.csv` (the header of
`APDDv2-10023.csv`: filename, Artistic Categories, Total aesthetic score, the ten attributes,
Language Comment), `csvfiles/train.csv`, `valid.csv`, `test.csv` (ArtCLIP's split files: filename,
Artistic Categories, Score = total / 10, the ten attributes), `descriptions.jsonl` (the
descriptions format of `aesbench/descriptions.py`), and `edits.csv` (provenance: source, split,
edits, damage, measured properties). Numbers are written as APDD writes them (no trailing zeros).

- Artwork number p (1-based, sorted order) and variant v give `art_PP_V.jpg`; variant 0 is the clean
  resized artwork, variants 1 and 2 get edits drawn exactly as tiny-ava's (same kinds, probabilities
  and severities, generator key `art/edit/<file>/<v>`), {len(art)} images in all.
- Category: APDD's "medium*style*subject", written for each artwork by looking at it once
  (`ART_WORKS`); the style is abstract or figurative. As in APDD, some attributes are not rated for
  some categories and their cells are blank: {"; ".join(f"{style}: {', '.join(cols)}" for style, cols in ART_UNRATED.items())}.
- Attributes (0–10): from generator `art/base/<file>`, base ~ U[{ART_BASE_RANGE[0]}, {ART_BASE_RANGE[1]}] then one offset per
  attribute ~ U[{ART_OFFSET_RANGE[0]}, {ART_OFFSET_RANGE[1]}] (in APDD's column order), shared by the artwork's 3 images;
  attribute = base + offset − Σ over edits of severity × w(kind, attribute) + measured term, clipped to
  [{ART_ATTRIBUTE_CLIP[0]}, {ART_ATTRIBUTE_CLIP[1]}] and rounded to 2 decimals. w is {ART_GENERAL_PENALTY} except where the table says; the
  measured terms are {", ".join(f"{k} += {w} × z({prop})" for k, (prop, w) in ART_MEASURED.items())}, with the
  properties of tiny-flickr-aes (luminance, saturation, contrast, sharpness) measured on each decoded
  output JPEG and z-scored over the {len(art)} images.

| edit kind | w for the attributes it hurts most |
|---|---|
{penalty_rows}

- Total aesthetic score (0–100) = 10 × the mean of the image's rated attributes, rounded to 2 decimals.
- Language Comment: empty for clean images; for edited ones one comment naming the edits, made as
  tiny-ava's captions are (generator `art/comment/<name>`).
- Split by artwork, per style (generator `art/split/<style>`, a permutation of that style's artworks):
  {", ".join(f"{style} {t} test, {v} val" for style, (t, v) in ART_SPLIT_PAINTINGS.items())}, the rest train, so test has
  {art_counts["test"]} images, val {art_counts["val"]} and train {art_counts["train"]}.
- `descriptions.jsonl`: a header, then for every image (all splits) three template-made levels and the
  score (generator `art/describe/<name>` picks the edit phrases). Perception: luminance, saturation
  and contrast named by fixed cuts (luminance < 0.35 dark, > 0.6 light; saturation > 0.5 vivid, < 0.2
  muted; contrast > 0.25 strong, < 0.12 soft) with their values, sharpness z-score beyond ±{ART_Z_CUT}
  as crisp or soft detail, then the edits' "the picture is ___" phrases (or "No damage is visible.").
  Cognition: medium, style and subject from the category, and whether damage (named per edit kind)
  obscures the design. Emotion: a mood word from luminance and saturation, and the Mood attribute
  (≥ 7 draws the viewer in, ≥ 5 muted, else cold). score_sentence: ArtQuant's level word for
  total / 10 (`aesbench.descriptions.score_sentence`).

Sanity figures (total against edit damage, and the attributes):

{art_sanity(art)}
"""
    write_text(out / "README.md", text)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", type=Path, required=True, help="folder with SOURCES.csv and the images")
    parser.add_argument("--out", type=Path, required=True, help="output folder, e.g. tasks/data")
    args = parser.parse_args()
    assert set(AVA_KINDS) <= set(DEGRADATIONS) and set(EDIT_PHRASES) == set(AVA_KINDS)

    start = time.perf_counter()
    photos = load_photos(args.corpus)
    for sub in SUBDIRS:
        shutil.rmtree(args.out / sub, ignore_errors=True)
    ava = build_ava(photos, args.out / "tiny-ava")
    pccd = build_pccd(photos, args.out / "tiny-pccd")
    flickr = build_flickr(photos, args.out / "tiny-flickr-aes")
    works = load_photos(args.corpus, "art")
    assert {w.file for w in works} == set(ART_WORKS) and {art_style(w.file) for w in works} == set(ART_UNRATED)
    art = build_art(works, args.out / "tiny-art")
    shutil.copyfile(args.corpus / "SOURCES.csv", args.out / "SOURCES.csv")
    write_readme(args.out, len(photos), ava, pccd, flickr, art)
    print(
        f"{len(photos)} photos -> {len(ava)} AVA, {len(pccd)} PCCD, {len(flickr['items'])} FLICKR-AES images; "
        f"{len(works)} artworks -> {len(art)} APDD images in {args.out} ({time.perf_counter() - start:.1f} s)"
    )


if __name__ == "__main__":
    main()
