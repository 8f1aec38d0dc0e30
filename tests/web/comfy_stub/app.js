// Stand-in for the ComfyUI frontend's scripts/app.js shim, served at /scripts/app.js to extension.html: records
// the extensions that register, so the page can drive web/unidit.js like the editor does.
export const app = {
  extensions: [],
  registerExtension(extension) {
    this.extensions.push(extension);
  },
};
