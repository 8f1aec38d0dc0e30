// UniDiT's ComfyUI extension: an in-node 3D viewer for the splat and mesh files that UniDiTSaveSplat and
// UniDiTSaveMesh write. Those nodes return
//   {"ui": {"unidit_3d": [{filename, subfolder, type, kind: "splat" | "mesh", format}]}}
// and the node shows the newest file, fetched from the server's /view route.
//
// Where the core sampling nodes do not exist (`unidit serve`), it also opens the pack's text -> image workflow in
// place of the frontend's default graph, which could only show missing nodes there.
//
// ComfyUI imports every *.js under web/, so this is the only .js file (it also shows the notes some nodes return,
// at its end); the viewer (web/viewer/viewer.mjs, with
// three.js and Spark vendored next to it) is imported on the first output, not when the editor starts.
import { app } from "../../scripts/app.js";
import { api } from "../../scripts/api.js";

const VIEWER_NODES = new Set(["UniDiTSaveSplat", "UniDiTSaveMesh"]);
const VIEWER_MODULE = new URL("./viewer/viewer.mjs", import.meta.url).href;
const BACKGROUND = "#202020";
const MIN_HEIGHT = 240;  // px of node height given to the viewer

// Node types of the frontend's default graphs, sorted: what it opens when it has no workflow to restore (a later
// start in a new browser profile). The current one first, then the older SD 1.5 one.
const FRONTEND_DEFAULT_GRAPHS = [
  "CLIPLoader,CLIPTextEncode,CLIPTextEncode,EmptySD3LatentImage,KSampler,ModelSamplingAuraFlow,SaveImage,UNETLoader,"
    + "VAEDecode,VAELoader",
  "CLIPTextEncode,CLIPTextEncode,CheckpointLoaderSimple,EmptyLatentImage,KSampler,SaveImage,VAEDecode",
];
const STARTER_WORKFLOW = "/workflow_templates/unidit/Text%20to%20image.json";

let viewerModule = null;  // the one import() of the viewer, shared by all nodes

function importViewer() {
  viewerModule ??= import(VIEWER_MODULE).catch((error) => {
    viewerModule = null;  // let the next output try again
    throw error;
  });
  return viewerModule;
}

// The viewer widget of one node: a box that holds a message until the first file, then the viewer's canvas.
class Preview3D {
  constructor(node) {
    this.element = document.createElement("div");
    // min-height: where the frontend lays the widget out in a flex column (its "Vue nodes" mode), not by size.
    this.element.style.cssText = `position:relative;width:100%;height:100%;min-height:${MIN_HEIGHT}px;`
      + `background:${BACKGROUND}`;
    this.message = document.createElement("div");
    this.message.style.cssText = "position:absolute;inset:0;display:flex;align-items:center;justify-content:center;"
      + "padding:8px;text-align:center;font:12px sans-serif;color:#999;pointer-events:none;z-index:1";
    this.element.append(this.message);
    this.setMessage("Run the workflow to see the 3D result here.");
    this.viewer = null;
    this.url = null;  // the file shown or being loaded
    this.removed = false;

    const widget = node.addDOMWidget("unidit_3d_preview", "unidit_3d", this.element, {
      serialize: false,  // not part of the prompt
      getMinHeight: () => MIN_HEIGHT,
    });
    widget.serialize = false;  // nor of the saved workflow's widgets_values (positional: they must not shift)
  }

  setMessage(text, isError = false) {
    this.message.textContent = text;
    this.message.style.display = text ? "flex" : "none";
    this.message.style.color = isError ? "#f77" : "#999";
  }

  async show({ filename, subfolder = "", type = "output", kind, format }) {
    const url = api.apiURL(`/view?${new URLSearchParams({ filename, subfolder, type })}`);
    if (url === this.url || this.removed) return;  // a cached re-run reports the same file again
    this.url = url;
    this.setMessage(`Loading ${filename}…`);
    try {
      const { createViewer } = await importViewer();
      if (this.removed || url !== this.url) return;
      this.viewer ??= createViewer(this.element, { background: BACKGROUND });
      await this.viewer.load({ url, kind, format });
      if (url === this.url) this.setMessage("");
    } catch (error) {
      console.error(`UniDiT: cannot show ${filename}`, error);
      if (url !== this.url) return;
      this.url = null;
      this.setMessage(`Cannot show ${filename}: ${error?.message ?? error}`, true);
    }
  }

  dispose() {
    this.removed = true;
    this.viewer?.dispose();
    this.viewer = null;
  }
}

function showOutput(node, output) {
  const files = output?.unidit_3d;
  if (files?.length) node?.uniditPreview?.show(files[files.length - 1]);
}

// Node locators are "<node id>" in the root graph and "<subgraph id>:<node id>" inside a subgraph.
function nodeByLocator(locator) {
  const root = app.rootGraph ?? app.graph;  // rootGraph from frontend 1.3x on
  const parts = String(locator).split(":");
  const graph = parts.length === 2 ? root?.subgraphs?.get(parts[0]) : root;
  return graph?.getNodeById(parts[parts.length - 1]) ?? null;
}

app.registerExtension({
  name: "UniDiT.Viewer3D",

  beforeRegisterNodeDef(nodeType, nodeData) {
    if (!VIEWER_NODES.has(nodeData.name)) return;
    const { onNodeCreated, onExecuted, onRemoved } = nodeType.prototype;

    nodeType.prototype.onNodeCreated = function () {
      const result = onNodeCreated?.apply(this, arguments);
      this.uniditPreview = new Preview3D(this);
      const [width, height] = this.computeSize();
      this.setSize([Math.max(width, 300), height]);
      return result;
    };
    nodeType.prototype.onExecuted = function (output) {
      onExecuted?.apply(this, arguments);
      showOutput(this, output);
    };
    nodeType.prototype.onRemoved = function () {
      this.uniditPreview?.dispose();
      return onRemoved?.apply(this, arguments);
    };
  },

  // Runs before the editor looks for missing nodes; the graph is replaced in place.
  async beforeConfigureGraph(graphData) {
    const registered = window.LiteGraph?.registered_node_types;
    if (!registered || registered.KSampler) return;  // inside ComfyUI the default graph runs as it is
    const types = (graphData?.nodes ?? []).map((node) => node.type).sort().join(",");
    if (!FRONTEND_DEFAULT_GRAPHS.includes(types)) return;
    const response = await api.fetchApi(STARTER_WORKFLOW);
    if (!response.ok) return;  // then the editor reports the missing nodes, as it would without this
    const starter = await response.json();
    for (const key of Object.keys(graphData)) delete graphData[key];
    Object.assign(graphData, starter);
  },

  // Outputs restored without a run (opening a finished job from the queue or history panel).
  onNodeOutputsUpdated(nodeOutputs) {
    for (const [locator, output] of Object.entries(nodeOutputs ?? {})) {
      if (output?.unidit_3d) showOutput(nodeByLocator(locator), output);
    }
  },
});

// Short notes that nodes return as {"ui": {"text": [...]}} (UniDiT Text Encode: the words the model does not know;
// UniDiT Sampler: a size the model was not trained at; UniDiT Unload Models: what it unloaded), shown in a line
// under the node's widgets.
const NOTE_NODES = new Set(["UniDiTTextEncode", "UniDiTSampler", "UniDiTUnloadModels"]);

function showNote(node, output) {
  const text = (output?.text ?? []).join(" ");
  if (!node || !node.uniditNote) return;
  node.uniditNote.textContent = text;
  node.uniditNote.style.display = text ? "block" : "none";
}

app.registerExtension({
  name: "UniDiT.Notes",

  beforeRegisterNodeDef(nodeType, nodeData) {
    if (!NOTE_NODES.has(nodeData.name)) return;
    const { onNodeCreated, onExecuted } = nodeType.prototype;
    nodeType.prototype.onNodeCreated = function () {
      const result = onNodeCreated?.apply(this, arguments);
      this.uniditNote = document.createElement("div");
      this.uniditNote.style.cssText = "display:none;padding:4px 6px;font:12px sans-serif;color:#e8c46a;"
        + "white-space:pre-wrap;overflow-wrap:anywhere";
      const widget = this.addDOMWidget("unidit_note", "unidit_note", this.uniditNote, { serialize: false });
      widget.serialize = false;  // not part of widgets_values (positional: they must not shift)
      return result;
    };
    nodeType.prototype.onExecuted = function (output) {
      onExecuted?.apply(this, arguments);
      showNote(this, output);
    };
  },
});
