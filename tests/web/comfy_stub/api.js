// Stand-in for the ComfyUI frontend's scripts/api.js shim: apiURL prefixes routes with /api, as the real one
// does on a server at the site root.
export const api = {
  apiURL: (route) => `/api${route}`,
};
