"""The demo's web page (gradio): two images, click a point, see its match and heat map.

Built on :class:`~corr.app.demo.DemoApp`; ``python -m corr.app`` serves it. Element ids that a
browser test (and a user's own automation) can rely on: ``source-view`` (click here),
``target-view``, ``matches`` (JSON of the points, original pixels), ``status``, ``notice``,
``flip``, ``clear``, ``backbone``, ``alpha``; in the "Swap" tab (:mod:`corr.app.swap_tab`)
``swap-note``, ``swap-category``, ``swap-refine``, ``swap-run``, ``swap-status``,
``swap-initial``, ``swap-refined``.
"""

# no `from __future__ import annotations`: gradio reads the `gr.SelectData` annotation of
# the click handler at run time to pass it the click
import logging
import os

from .demo import DemoApp, PageState, bundled_examples
from .swap_tab import SwapTab

logger = logging.getLogger(__name__)

ABOUT = """\
# corr: semantic correspondence, point by point
Click a point on the **source** (left); its match on the **target** (right) is drawn as a
ring of the same colour, over the similarity heat map of the last click (red: most similar).
Features are computed once per image; every click reuses them. *Try flip alignment* compares
the source with its mirror image (docs/protocol.md §6) and matches from the better one.
Coordinates are original image pixels `(x, y)`.
"""


def _import_gradio():
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    try:
        import gradio as gr
    except ImportError as err:
        raise ImportError('the interactive demo needs gradio: pip install "semcorr[app]"') from err
    return gr


def theme():
    """A theme with local fonts only (the page never asks a font server)."""
    gr = _import_gradio()
    return gr.themes.Default(
        font=["ui-sans-serif", "system-ui", "sans-serif"],
        font_mono=["ui-monospace", "monospace"],
    )


def build_blocks(app: DemoApp):
    """The gradio ``Blocks`` of the page, wired to ``app``."""
    gr = _import_gradio()
    swap_tab = SwapTab(app)
    examples = bundled_examples()
    first = examples[0] if examples else [None, None]

    def outputs(state: PageState, status: str):
        src, tgt = app.pictures(state)
        return state, src, tgt, app.matches_json(state), status

    def on_load(src, tgt, backbone, alpha):
        try:
            state, status = app.load(src, tgt, backbone, alpha)
        except (FileNotFoundError, ValueError, ImportError) as err:
            gr.Warning(str(err))
            state, status = PageState(), f"**Cannot run {app.backbones[backbone][0]}:** {err}"
        return outputs(state, status)

    def on_click(state, evt: gr.SelectData):
        try:
            state, status = app.click(state, float(evt.index[0]), float(evt.index[1]))
        except (FileNotFoundError, ValueError) as err:
            status = f"**{err}**"
        return outputs(state, status)

    def on_flip(state):
        try:
            state, status = app.flip(state)
        except (FileNotFoundError, ValueError) as err:
            status = f"**{err}**"
        return outputs(state, status)

    def on_clear(state):
        state, status = app.clear(state)
        return outputs(state, status)

    def on_swap(state, backbone, category, refine):
        try:
            return swap_tab.run(state, backbone, category, refine)
        except (FileNotFoundError, ValueError, ImportError) as err:
            return None, None, f"**Cannot swap:** {err}"

    with gr.Blocks(title="corr: semantic correspondence", analytics_enabled=False) as blocks:
        gr.Markdown(ABOUT)
        gr.Markdown(app.notice(), elem_id="notice")
        with gr.Row():
            backbone = gr.Dropdown(
                choices=[(label, key) for key, (label, _) in app.backbones.items()],
                value=app.backbone,
                label="Backbone",
                elem_id="backbone",
            )
            alpha = gr.Slider(
                0.0,
                1.0,
                value=0.5,
                step=0.05,
                label="alpha: weight of SD in the SD+DINO fusion (1 - alpha: DINOv2)",
                visible=app.backbone == "sd-dino",
                elem_id="alpha",
            )
        with gr.Row():  # the images themselves, as uploaded
            src_in, tgt_in = (
                gr.Image(
                    value=value,
                    type="numpy",
                    sources=["upload", "clipboard"],
                    label=f"{side.capitalize()} image",
                    height=180,
                    elem_id=f"{side}-input",
                )
                for side, value in zip(("source", "target"), first, strict=True)
            )
        if examples:
            gr.Examples(examples, inputs=[src_in, tgt_in], label="Bundled photos")
        with gr.Row(equal_height=True):
            status = gr.Markdown("Loading...", elem_id="status")
            flip = gr.Button("Try flip alignment", elem_id="flip", scale=0)
            clear = gr.Button("Clear points", elem_id="clear", scale=0)
        with gr.Row():  # what is shown: points, matches, heat map (clicks go to the source)
            src_view, tgt_view = (
                gr.Image(
                    label=label,
                    interactive=False,
                    height=560,
                    format="jpeg",
                    buttons=[],
                    elem_id=f"{side}-view",
                )
                for side, label in (
                    ("source", "Source: click a point"),
                    ("target", "Target: matches and the last click's similarity"),
                )
            )
        matches = gr.Textbox(
            label="Matches (JSON): (x, y) in original pixels of each image; similarity = cosine "
            "of the matched cell",
            lines=6,
            interactive=False,
            elem_id="matches",
        )
        # the Swap tab below the matching page, which keeps its layout (and its browser test)
        with gr.Tabs():
            with gr.Tab("Swap", elem_id="tab-swap"):
                gr.Markdown(swap_tab.note(), elem_id="swap-note")
                with gr.Row(equal_height=True):
                    category = gr.Textbox(
                        value="tiger",
                        label="Category (the refinement's prompt: A high quality image of ...)",
                        elem_id="swap-category",
                    )
                    refine = gr.Checkbox(
                        value=swap_tab.problem is None,
                        interactive=swap_tab.problem is None,
                        label="Diffusion refinement (SD 1.5)",
                        elem_id="swap-refine",
                    )
                    run_swap = gr.Button("Swap", elem_id="swap-run", scale=0)
                swap_status = gr.Markdown("", elem_id="swap-status")
                with gr.Row():
                    swap_initial, swap_refined = (
                        gr.Image(
                            label=label,
                            interactive=False,
                            height=420,
                            format="jpeg",
                            buttons=[],
                            elem_id=f"swap-{key}",
                        )
                        for key, label in (
                            ("initial", "Initial swap (dense correspondence)"),
                            ("refined", "Refined (DDIM inversion + feature injection)"),
                        )
                    )
        state = gr.State(PageState())
        out = [state, src_view, tgt_view, matches, status]
        settings = [src_in, tgt_in, backbone, alpha]
        blocks.load(on_load, settings, out)
        for trigger in (src_in.change, tgt_in.change, backbone.change, alpha.release):
            trigger(on_load, settings, out)
        backbone.change(lambda b: gr.update(visible=b == "sd-dino"), [backbone], [alpha])
        src_view.select(on_click, [state], out)
        flip.click(on_flip, [state], out)
        clear.click(on_clear, [state], out)
        run_swap.click(
            on_swap,
            [state, backbone, category, refine],
            [swap_initial, swap_refined, swap_status],
        )
    blocks.queue(default_concurrency_limit=1)  # one model: requests take turns
    return blocks
