// The UniDiT 3D viewer: one Gaussian splat (via Spark) or one mesh (via three.js loaders) in a canvas, with
// orbit controls. No ComfyUI dependency: web/unidit.js puts it in a node, tests/web/harness.html on a page.
//
//   const viewer = createViewer(container, { background: "#202020" });
//   await viewer.load({ url, kind: "splat" | "mesh", format: "ply" | "spz" | "splat" | "glb" | "obj" | "stl" });
//   viewer.dispose();
//
// Axes: splat files are in the 3DGS/COLMAP frame (x right, y down, z forward) and are turned 180° about X to
// stand upright in three.js (y up); meshes are written y-up already, as (x, -y, -z) of the same frame, so a
// splat and the mesh extracted from it coincide.
//
// Materials: a GLB keeps its own (ours: a matte PBR material, with the baked base-colour texture where the mesh
// has one); an OBJ that names a material library (`mtllib`) gets that library's materials and images, fetched
// next to the OBJ (ComfyUI's /view?filename=... included: see siblingURL); any other mesh, and an OBJ whose
// library or images cannot be fetched, is drawn matte with its vertex colours.
//
// Resolution: the drawing buffer has the canvas's pixels on the display: its CSS size times devicePixelRatio
// times the scale of CSS transforms above it. ComfyUI draws a node's widgets at the canvas's zoom with
// `transform: scale(...)`: a buffer of the CSS size would be stretched there, showing a splat's Gaussians as
// blocks. No observer reports a transform, so the size on screen is also checked every DISPLAY_CHECK_MS.
//
// Frames are drawn on demand (camera moved, canvas resized or zoomed, object loaded, Spark finished a sort),
// never in a loop. After the first frame that shows a newly loaded object, the container gets
// `data-unidit-ready="1"` and a `unidit-ready` event (the browser test waits for it).
import * as THREE from "./vendor/three.mjs";
import { GLTFLoader, MTLLoader, OBJLoader, OrbitControls, PLYLoader, STLLoader } from "./vendor/three-addons.mjs";

const FIELD_OF_VIEW = 40;                            // vertical, degrees
const VIEW_DIRECTION = new THREE.Vector3(0, Math.sin(THREE.MathUtils.degToRad(20)),
                                         Math.cos(THREE.MathUtils.degToRad(20)));  // front, 20° above
const SPLAT_BOUNDS_QUANTILE = 0.005;                 // frame splats without their farthest 0.5% per axis (floaters)
const SPLAT_MIN_OPACITY = 0.1;                       // ... and without faint Gaussians
const DISPLAY_CHECK_MS = 500;                        // how often the canvas's size on screen is checked

export function createViewer(container, { background = "#202020" } = {}) {
  const canvas = document.createElement("canvas");
  canvas.style.cssText = "display:block;width:100%;height:100%;outline:none;touch-action:none";
  container.appendChild(canvas);

  // No antialiasing, as Spark asks: it costs much and does nothing for splats.
  const renderer = new THREE.WebGLRenderer({ canvas, antialias: false });
  const scene = new THREE.Scene();
  scene.background = new THREE.Color(background);
  const camera = new THREE.PerspectiveCamera(FIELD_OF_VIEW, 1, 0.01, 100);
  scene.add(camera, new THREE.HemisphereLight(0xffffff, 0xb0b0b0, 2));
  const headLight = new THREE.DirectionalLight(0xffffff, 1.5);  // follows the camera, from above and right
  headLight.position.set(0.3, 0.5, 0);
  headLight.target.position.set(0, 0, -1);
  camera.add(headLight, headLight.target);

  const controls = new OrbitControls(camera, canvas);
  controls.addEventListener("change", requestRender);
  let userMoved = false;  // once the user has moved the camera, resizing no longer re-frames
  controls.addEventListener("start", () => { userMoved = true; });

  let spark = null;          // Spark's renderer, created with the first splat
  let shown = null;          // { object, bounds, settled(), dispose(), load }
  let loads = 0;             // load() calls so far; a newer one supersedes an older one still in flight
  let frame = 0;
  let disposed = false;

  // Sizes the drawing buffer in device pixels (pixel ratio 1 for three.js: the buffer is exactly the canvas's
  // pixels on the display); re-frames the object when the aspect changed.
  let cssSize = [0, 0];
  function fitDrawingBuffer() {
    const { clientWidth: width, clientHeight: height } = container;
    if (width === 0 || height === 0) return;  // hidden (a collapsed node)
    const ratio = displayPixelRatio(container);
    const [bufferWidth, bufferHeight] = [width, height].map((size) => Math.max(1, Math.round(size * ratio)));
    const resized = width !== cssSize[0] || height !== cssSize[1];
    if (!resized && canvas.width === bufferWidth && canvas.height === bufferHeight) return;
    renderer.setDrawingBufferSize(bufferWidth, bufferHeight, 1);
    if (resized) {
      cssSize = [width, height];
      camera.aspect = width / height;
      if (shown && !userMoved) frameBounds(shown.bounds);
      camera.updateProjectionMatrix();
    }
    requestRender();
  }
  const resizeObserver = new ResizeObserver(fitDrawingBuffer);
  resizeObserver.observe(container);
  const displayCheck = setInterval(fitDrawingBuffer, DISPLAY_CHECK_MS);  // zoom (transforms), devicePixelRatio

  function requestRender() {
    if (!frame && !disposed) frame = requestAnimationFrame(draw);
  }

  function draw() {
    frame = 0;
    if (container.clientWidth === 0 || container.clientHeight === 0) return;
    renderer.render(scene, camera);
    if (shown?.load === loads && !container.dataset.uniditReady && shown.settled()) {
      container.dataset.uniditReady = "1";
      container.dispatchEvent(new Event("unidit-ready"));
    }
  }

  // Places the camera on VIEW_DIRECTION so that the box fills most of the view from any orbit angle.
  function frameBounds(bounds) {
    const center = bounds.getCenter(new THREE.Vector3());
    const size = bounds.getSize(new THREE.Vector3());
    const half = Math.max(size.x, size.y, size.z, 1e-6) / 2;
    const tanVertical = Math.tan(THREE.MathUtils.degToRad(FIELD_OF_VIEW / 2));
    const tanHalfView = Math.min(tanVertical, tanVertical * camera.aspect);
    const distance = half + 1.15 * half / tanHalfView;
    camera.position.copy(center).addScaledVector(VIEW_DIRECTION, distance);
    camera.near = distance / 100;
    camera.far = distance * 100;
    camera.updateProjectionMatrix();
    controls.target.copy(center);
    controls.minDistance = distance / 20;
    controls.maxDistance = distance * 20;
    controls.update();
  }

  async function loadSplat(bytes, format) {
    const { SparkRenderer, SplatMesh } = await import("./vendor/spark.mjs");
    if (!spark) {
      spark = new SparkRenderer({ renderer, onDirty: requestRender });
      scene.add(spark);
    }
    // Bytes plus a file name, not a URL: /view?filename=... has no extension for Spark to read the format from.
    const splat = new SplatMesh({ fileBytes: bytes, fileName: `splat.${format}` });
    await splat.initialized;
    splat.quaternion.set(1, 0, 0, 0);  // 180° about X: COLMAP (y down, z forward) -> three.js (y up)
    splat.updateMatrixWorld();
    const bounds = splatBounds(splat).applyMatrix4(splat.matrixWorld);
    const addedAt = performance.now();
    // Spark sorts splats in a worker; a frame shows the splat once a sort started after it was added has ended.
    const settled = () => spark.lastSortTime >= addedAt && !spark.sorting && spark.activeSplats > 0;
    return { object: splat, bounds, settled, dispose: () => splat.dispose() };
  }

  async function loadMesh(bytes, format, url) {
    const object = await parseMesh(bytes, format, url);
    object.updateMatrixWorld();
    return {
      object, bounds: new THREE.Box3().setFromObject(object), settled: () => true, dispose: () => disposeMesh(object),
    };
  }

  return {
    async load({ url, kind, format }) {
      const load = ++loads;
      delete container.dataset.uniditReady;
      format = String(format).toLowerCase();
      if (kind !== "splat" && kind !== "mesh") throw new Error(`unknown kind of 3D file: ${kind}`);
      const response = await fetch(url);
      if (!response.ok) throw new Error(`could not fetch the ${kind} file (HTTP ${response.status})`);
      const bytes = new Uint8Array(await response.arrayBuffer());
      const next = kind === "splat" ? await loadSplat(bytes, format) : await loadMesh(bytes, format, url);
      if (load !== loads || disposed) {  // superseded while loading
        next.dispose();
        return;
      }
      if (shown) {
        scene.remove(shown.object);
        shown.dispose();
      }
      shown = { ...next, load };
      scene.add(shown.object);
      userMoved = false;
      frameBounds(shown.bounds);
      requestRender();
    },

    dispose() {
      disposed = true;
      cancelAnimationFrame(frame);
      resizeObserver.disconnect();
      clearInterval(displayCheck);
      controls.dispose();
      shown?.dispose();
      spark?.dispose();
      renderer.dispose();
      renderer.forceContextLoss();  // browsers allow few live WebGL contexts; free this one now
      canvas.remove();
    },
  };
}

// Device pixels per CSS pixel of `element` as the display shows it: devicePixelRatio times the scale of the CSS
// transforms above it, at most as many pixels in all as the window has (a node zoomed far beyond the window).
function displayPixelRatio(element) {
  const onScreen = element.getBoundingClientRect().width / element.offsetWidth;  // 1 without transforms
  const ratio = window.devicePixelRatio * (Number.isFinite(onScreen) && onScreen > 0 ? onScreen : 1);
  const windowPixels = window.innerWidth * window.innerHeight * window.devicePixelRatio ** 2;
  return Math.min(ratio, Math.sqrt(windowPixels / (element.clientWidth * element.clientHeight)));
}

// The URL of the file `name` (a path relative to the file at `url`, as an OBJ names its material library and a
// library its images). ComfyUI's /view?filename=NAME&subfolder=FOLDER&type=... names the file in its query: the
// name's file part replaces filename and its folder part extends subfolder. Any other URL is resolved as a path.
function siblingURL(url, name) {
  const resolved = new URL(url, document.baseURI);
  const absolute = /^[a-z][a-z0-9+.-]*:/i.test(name);
  if (absolute || !resolved.searchParams.has("filename")) return new URL(name, resolved).href;
  const folders = name.split(/[\\/]/);
  resolved.searchParams.set("filename", folders.pop());
  if (folders.length > 0) {
    const subfolder = resolved.searchParams.get("subfolder");
    resolved.searchParams.set("subfolder", [subfolder, ...folders].filter(Boolean).join("/"));
  }
  return resolved.href;
}

// A box around the splat's Gaussian centres, in its own frame, leaving out faint Gaussians and the farthest
// SPLAT_BOUNDS_QUANTILE of the rest along each axis, so that a few floaters do not shrink the object on screen.
function splatBounds(splat) {
  const axes = [[], [], []];
  splat.forEachSplat((index, center, scales, quaternion, opacity) => {
    if (opacity >= SPLAT_MIN_OPACITY) center.toArray().forEach((value, axis) => axes[axis].push(value));
  });
  if (axes[0].length === 0) return splat.getBoundingBox(true);
  const [low, high] = [new THREE.Vector3(), new THREE.Vector3()];
  axes.forEach((values, axis) => {
    const sorted = Float32Array.from(values).sort();
    const last = sorted.length - 1;
    low.setComponent(axis, sorted[Math.floor(SPLAT_BOUNDS_QUANTILE * last)]);
    high.setComponent(axis, sorted[Math.ceil((1 - SPLAT_BOUNDS_QUANTILE) * last)]);
  });
  return new THREE.Box3(low, high);
}

async function parseMesh(bytes, format, url) {
  const buffer = bytes.buffer;
  switch (format) {
    case "glb":  // keeps the file's material: ours is matte PBR with COLOR_0 or a baseColorTexture (kept, with its map)
      return (await new GLTFLoader().parseAsync(buffer, "")).scene;
    case "obj": {
      const text = new TextDecoder().decode(bytes);
      const materials = await objMaterials(text, url);
      return materials ? new OBJLoader().setMaterials(materials).parse(text)
        : withMatteMaterial(new OBJLoader().parse(text));
    }
    case "ply":
      return withMatteMaterial(new THREE.Mesh(new PLYLoader().parse(buffer)));
    case "stl":
      return withMatteMaterial(new THREE.Mesh(new STLLoader().parse(buffer)));
    default:
      throw new Error(`unsupported mesh format: ${format}`);
  }
}

// The materials of the library an OBJ names (its first `mtllib`), fetched next to the OBJ, with their images
// loaded, double-sided like the other meshes; null, with a warning, when the OBJ names none or the library or one
// of its images cannot be fetched.
async function objMaterials(text, url) {
  const library = text.match(/^[ \t]*mtllib[ \t]+(.+?)[ \t\r]*$/m)?.[1];
  if (!library) return null;
  const libraryURL = siblingURL(url, library);
  const response = await fetch(libraryURL);
  if (!response.ok) {
    console.warn(`UniDiT viewer: the OBJ's material library ${library} could not be fetched (HTTP ${response.status}); `
      + "showing the mesh without it");
    return null;
  }
  const failed = [];
  let loading = false;
  const manager = new THREE.LoadingManager();
  manager.setURLModifier((name) => siblingURL(libraryURL, name));  // images are named relative to the library
  manager.onStart = () => { loading = true; };
  manager.onError = (imageURL) => failed.push(imageURL);
  const loaded = new Promise((resolve) => { manager.onLoad = resolve; });
  const materials = new MTLLoader(manager).setMaterialOptions({ side: THREE.DoubleSide })
    .parse(await response.text(), "");
  materials.preload();  // creates every material, which starts loading its images
  if (loading) await loaded;
  if (failed.length === 0) return materials;
  console.warn(`UniDiT viewer: ${failed.join(", ")} (named by ${library}) could not be loaded; showing the mesh `
    + "without its material library");
  Object.values(materials.materials).forEach(disposeMaterial);
  return null;
}

// The loaders' own materials ignore vertex colours (PLY, STL) or are shiny (OBJ): use one lit, matte,
// double-sided material that shows vertex colours where the file has them (the loaders convert them to linear).
function withMatteMaterial(root) {
  root.traverse((child) => {
    if (!child.isMesh) return;
    const geometry = child.geometry;
    if (!geometry.getAttribute("normal")) geometry.computeVertexNormals();
    child.material = new THREE.MeshStandardMaterial({
      vertexColors: geometry.getAttribute("color") !== undefined,
      roughness: 1,
      metalness: 0,
      side: THREE.DoubleSide,
    });
  });
  return root;
}

function disposeMesh(object) {
  object.traverse((child) => {
    child.geometry?.dispose();
    [child.material].flat().forEach(disposeMaterial);
  });
}

function disposeMaterial(material) {
  if (!material) return;
  for (const value of Object.values(material)) if (value?.isTexture) value.dispose();  // a map, where it has one
  material.dispose();
}
