// WebGL 2 renderer of a linear HDR texture. Exposure, tone mapping, false colour and the equirectangular
// look-around all happen in one fragment shader, so every control is a uniform change and redraws at once.
//
// Texture: linear relative radiance (1.0 = the EV-0 clipping level), RGB float16 or float32, rows top to bottom.
// Canvas: sRGB-encoded display values (IEC 61966-2-1), 8 bits per channel.
// Panoramas follow latenthdr.panorama: row 0 = zenith, column 0 = yaw -180 deg, yaw 0 looks along +Z,
// d(yaw, elev) = (-sin(yaw) cos(elev), sin(elev), cos(yaw) cos(elev)); the field of view is horizontal.

export const OPERATORS = { aces: 0, reinhard: 1, agx: 2, clip: 3 };
export const OPERATOR_NAMES = { aces: "ACES filmic (Narkowicz 2016)", reinhard: "Reinhard 2002 (white = peak)",
                                agx: "AgX-like (Sobotka; Wrensch fit)", clip: "Clip (linear, exact 2^EV)" };
export const LUMA = [0.2126, 0.7152, 0.0722];  // Rec.709 weights, as latenthdr.response.REC709_LUMA
export const MIDDLE_GREY = 0.18;
// False colour: one band per stop of exposed luminance relative to 18% grey, -7 (and below) ... +7 (and above).
export const FALSE_COLOUR_LOWEST_STOP = -7;
export const FALSE_COLOUR = [
  [0.05, 0.00, 0.10], [0.25, 0.00, 0.40], [0.40, 0.10, 0.70], [0.10, 0.20, 0.90], [0.00, 0.50, 1.00],
  [0.00, 0.75, 0.80], [0.10, 0.60, 0.25], [0.50, 0.50, 0.50], [0.65, 0.85, 0.20], [1.00, 0.95, 0.20],
  [1.00, 0.70, 0.00], [1.00, 0.40, 0.00], [0.90, 0.05, 0.05], [1.00, 0.50, 0.80], [1.00, 1.00, 1.00],
];

const VERTEX_SHADER = `#version 300 es
in vec2 a_position;
void main() { gl_Position = vec4(a_position, 0.0, 1.0); }`;

const FRAGMENT_SHADER = `#version 300 es
precision highp float;
precision highp sampler2D;

uniform sampler2D u_image;
uniform ivec2 u_imageSize;     // texture width, height (pixels)
uniform vec2 u_canvasSize;     // drawing buffer width, height (pixels)
uniform float u_gain;          // 2^EV
uniform int u_operator;        // OPERATORS
uniform float u_whiteLum;      // Reinhard L_white, after exposure
uniform bool u_falseColour;
uniform vec3 u_palette[${FALSE_COLOUR.length}];
uniform bool u_lookAround;
uniform vec2 u_pan;            // image view: image pixel = (canvas pixel - u_pan) / u_zoom, top-down
uniform float u_zoom;
uniform vec3 u_forward;        // look-around camera basis (panorama.py _camera_basis)
uniform vec3 u_right;
uniform vec3 u_up;
uniform float u_halfWidth;     // tan(horizontal fov / 2)
out vec4 outColour;

const float PI = 3.141592653589793;
const vec3 LUMA = vec3(${LUMA.join(", ")});
const vec3 BACKGROUND = vec3(0.16);

// Narkowicz (2016) ACES filmic fit per channel, as latenthdr.tonemap.aces_narkowicz.
vec3 aces(vec3 x) { return clamp(x * (2.51 * x + 0.03) / (x * (2.43 * x + 0.59) + 0.14), 0.0, 1.0); }

// Reinhard et al. (2002) Eq. 4 on luminance, hue kept, as latenthdr.tonemap.reinhard.
vec3 reinhard(vec3 x) {
  float L = dot(x, LUMA);
  if (L <= 0.0) return vec3(0.0);
  float Ld = L * (1.0 + (L / u_whiteLum) / u_whiteLum) / (1.0 + L);
  return x * (Ld / L);
}

// AgX-like: Sobotka's AgX base (inset, log2 over [-12.47, +4.03] stops around 1, sigmoid, outset) with the
// sigmoid in Wrensch's (2023) 6th-order polynomial fit; gamma 2.2 turns its output back into display light.
const mat3 AGX_INSET = mat3(0.842479062253094, 0.0423282422610123, 0.0423756549057051,
                            0.0784335999999992, 0.878468636469772, 0.0784336,
                            0.0792237451477643, 0.0791661274605434, 0.879142973793104);
const mat3 AGX_OUTSET = mat3(1.19687900512017, -0.0528968517574562, -0.0529716355144438,
                             -0.0980208811401368, 1.15190312990417, -0.0980434501171241,
                             -0.0990297440797205, -0.0989611768448433, 1.15107367264116);
const float AGX_MIN_EV = -12.47393;
const float AGX_MAX_EV = 4.026069;
vec3 agx(vec3 x) {
  x = clamp(log2(max(AGX_INSET * x, 1e-10)), AGX_MIN_EV, AGX_MAX_EV);
  x = (x - AGX_MIN_EV) / (AGX_MAX_EV - AGX_MIN_EV);
  vec3 x2 = x * x;
  vec3 x4 = x2 * x2;
  x = 15.5 * x4 * x2 - 40.14 * x4 * x + 31.96 * x4 - 6.868 * x2 * x + 0.4298 * x2 + 0.1191 * x - 0.00232;
  return pow(max(AGX_OUTSET * x, 0.0), vec3(2.2));
}

vec3 srgbEncode(vec3 x) {
  x = clamp(x, 0.0, 1.0);
  return mix(12.92 * x, 1.055 * pow(x, vec3(1.0 / 2.4)) - 0.055, step(0.0031308, x));
}

vec3 falseColour(float L) {
  if (L <= 0.0) return u_palette[0];
  int band = clamp(int(floor(log2(L / ${MIDDLE_GREY}) + 0.5)), ${FALSE_COLOUR_LOWEST_STOP},
                   ${FALSE_COLOUR_LOWEST_STOP + FALSE_COLOUR.length - 1});
  return u_palette[band - (${FALSE_COLOUR_LOWEST_STOP})];
}

vec3 display(vec3 linear) {
  vec3 x = max(linear, 0.0) * u_gain;
  if (u_falseColour) return falseColour(dot(x, LUMA));
  if (u_operator == ${OPERATORS.aces}) x = aces(x);
  else if (u_operator == ${OPERATORS.reinhard}) x = reinhard(x);
  else if (u_operator == ${OPERATORS.agx}) x = agx(x);
  return srgbEncode(x);
}

void main() {
  vec2 p = vec2(gl_FragCoord.x, u_canvasSize.y - gl_FragCoord.y);  // top-down canvas pixel (centre at .5)
  vec3 linear;
  if (u_lookAround) {
    float a = (p.x / u_canvasSize.x * 2.0 - 1.0) * u_halfWidth;
    float b = (1.0 - p.y / u_canvasSize.y * 2.0) * u_halfWidth * u_canvasSize.y / u_canvasSize.x;
    vec3 d = normalize(u_forward + a * u_right + b * u_up);
    float yaw = atan(-d.x, d.z);
    float elev = asin(clamp(d.y, -1.0, 1.0));
    linear = texture(u_image, vec2((yaw + PI) / (2.0 * PI), (0.5 * PI - elev) / PI)).rgb;  // wraps at the seam
  } else {
    vec2 q = (p - u_pan) / u_zoom;
    if (any(lessThan(q, vec2(0.0))) || any(greaterThanEqual(q, vec2(u_imageSize)))) {
      outColour = vec4(BACKGROUND, 1.0);
      return;
    }
    linear = texelFetch(u_image, ivec2(q), 0).rgb;  // the stored value, unfiltered
  }
  outColour = vec4(display(linear), 1.0);
}`;

const UNIFORMS = ["u_image", "u_imageSize", "u_canvasSize", "u_gain", "u_operator", "u_whiteLum", "u_falseColour",
                  "u_palette", "u_lookAround", "u_pan", "u_zoom", "u_forward", "u_right", "u_up", "u_halfWidth"];

function compile(gl, type, source) {
  const shader = gl.createShader(type);
  gl.shaderSource(shader, source);
  gl.compileShader(shader);
  if (!gl.getShaderParameter(shader, gl.COMPILE_STATUS)) throw new Error(gl.getShaderInfoLog(shader));
  return shader;
}

function link(gl) {
  const program = gl.createProgram();
  gl.attachShader(program, compile(gl, gl.VERTEX_SHADER, VERTEX_SHADER));
  gl.attachShader(program, compile(gl, gl.FRAGMENT_SHADER, FRAGMENT_SHADER));
  gl.linkProgram(program);
  if (!gl.getProgramParameter(program, gl.LINK_STATUS)) throw new Error(gl.getProgramInfoLog(program));
  return program;
}

export class Renderer {
  constructor(canvas) {
    const gl = canvas.getContext("webgl2", { alpha: false, antialias: false, preserveDrawingBuffer: true });
    if (!gl) throw new Error("this viewer needs WebGL 2, which this browser does not offer");
    this.gl = gl;
    this.canvas = canvas;
    this.floatLinear = Boolean(gl.getExtension("OES_texture_float_linear"));
    this.maxTextureSize = gl.getParameter(gl.MAX_TEXTURE_SIZE);
    this.program = link(gl);
    this.u = Object.fromEntries(UNIFORMS.map((name) => [name, gl.getUniformLocation(this.program, name)]));
    gl.bindVertexArray(gl.createVertexArray());
    gl.bindBuffer(gl.ARRAY_BUFFER, gl.createBuffer());
    gl.bufferData(gl.ARRAY_BUFFER, new Float32Array([-1, -1, 3, -1, -1, 3]), gl.STATIC_DRAW);  // one big triangle
    const position = gl.getAttribLocation(this.program, "a_position");
    gl.enableVertexAttribArray(position);
    gl.vertexAttribPointer(position, 2, gl.FLOAT, false, 0, 0);
    this.texture = null;
    this.imageSize = [1, 1];
  }

  // image: {width, height, dtype: "float16" | "float32", data: Uint16Array | Float32Array of width*height*3}
  setImage(image) {
    const gl = this.gl;
    if (this.texture) gl.deleteTexture(this.texture);
    this.texture = gl.createTexture();
    gl.bindTexture(gl.TEXTURE_2D, this.texture);
    gl.pixelStorei(gl.UNPACK_ALIGNMENT, 1);
    const half = image.dtype === "float16";
    gl.texImage2D(gl.TEXTURE_2D, 0, half ? gl.RGB16F : gl.RGB32F, image.width, image.height, 0, gl.RGB,
                  half ? gl.HALF_FLOAT : gl.FLOAT, image.data);
    const filter = half || this.floatLinear ? gl.LINEAR : gl.NEAREST;
    gl.texParameteri(gl.TEXTURE_2D, gl.TEXTURE_MIN_FILTER, filter);
    gl.texParameteri(gl.TEXTURE_2D, gl.TEXTURE_MAG_FILTER, filter);
    gl.texParameteri(gl.TEXTURE_2D, gl.TEXTURE_WRAP_S, gl.REPEAT);  // yaw wraps around the seam
    gl.texParameteri(gl.TEXTURE_2D, gl.TEXTURE_WRAP_T, gl.CLAMP_TO_EDGE);
    this.imageSize = [image.width, image.height];
  }

  // view: {ev, operator, whiteLum, falseColour, lookAround, pan: [x, y], zoom, yawDeg, pitchDeg, fovDeg}
  draw(view) {
    const gl = this.gl, u = this.u;
    gl.viewport(0, 0, this.canvas.width, this.canvas.height);
    gl.useProgram(this.program);
    gl.activeTexture(gl.TEXTURE0);
    gl.bindTexture(gl.TEXTURE_2D, this.texture);
    gl.uniform1i(u.u_image, 0);
    gl.uniform2i(u.u_imageSize, this.imageSize[0], this.imageSize[1]);
    gl.uniform2f(u.u_canvasSize, this.canvas.width, this.canvas.height);
    gl.uniform1f(u.u_gain, 2 ** view.ev);
    gl.uniform1i(u.u_operator, OPERATORS[view.operator]);
    gl.uniform1f(u.u_whiteLum, Math.max(view.whiteLum * 2 ** view.ev, 1e-30));
    gl.uniform1i(u.u_falseColour, view.falseColour ? 1 : 0);
    gl.uniform3fv(u.u_palette, FALSE_COLOUR.flat());
    gl.uniform1i(u.u_lookAround, view.lookAround ? 1 : 0);
    gl.uniform2f(u.u_pan, view.pan[0], view.pan[1]);
    gl.uniform1f(u.u_zoom, view.zoom);
    const camera = cameraBasis(view.yawDeg, view.pitchDeg);
    gl.uniform3fv(u.u_forward, camera.forward);
    gl.uniform3fv(u.u_right, camera.right);
    gl.uniform3fv(u.u_up, camera.up);
    gl.uniform1f(u.u_halfWidth, Math.tan((view.fovDeg * Math.PI) / 360));
    gl.drawArrays(gl.TRIANGLES, 0, 3);
  }

  // The displayed RGBA code values (0-255) of canvas pixel (x, y), counted from the top left.
  readPixel(x, y) {
    const out = new Uint8Array(4);
    this.gl.readPixels(x, this.canvas.height - 1 - y, 1, 1, this.gl.RGBA, this.gl.UNSIGNED_BYTE, out);
    return Array.from(out);
  }
}

export function direction(yaw, elev) {
  return [-Math.sin(yaw) * Math.cos(elev), Math.sin(elev), Math.cos(yaw) * Math.cos(elev)];
}

// (forward, right, up) of a camera with no roll looking at (yaw, pitch), as panorama.py's _camera_basis.
export function cameraBasis(yawDeg, pitchDeg) {
  const yaw = (yawDeg * Math.PI) / 180, pitch = (pitchDeg * Math.PI) / 180;
  return { forward: direction(yaw, pitch), right: direction(yaw + Math.PI / 2, 0), up: direction(yaw, pitch + Math.PI / 2) };
}

// The shader's look-around ray through canvas point (x, y) (top-down, pixel centres at .5), as [yaw, elev] radians.
export function lookAroundAngles(view, x, y, canvasWidth, canvasHeight) {
  const { forward, right, up } = cameraBasis(view.yawDeg, view.pitchDeg);
  const half = Math.tan((view.fovDeg * Math.PI) / 360);
  const a = ((x / canvasWidth) * 2 - 1) * half;
  const b = (1 - (y / canvasHeight) * 2) * half * (canvasHeight / canvasWidth);
  const d = [0, 1, 2].map((i) => forward[i] + a * right[i] + b * up[i]);
  const n = Math.hypot(d[0], d[1], d[2]);
  return [Math.atan2(-d[0], d[2]), Math.asin(Math.max(-1, Math.min(1, d[1] / n)))];
}
