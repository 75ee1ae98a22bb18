#!/usr/bin/env node
/**
 * The node_modules the installed ROS package runs on, and nothing else:
 * the project's locked runtime dependencies without the development ones
 * (TypeScript, mocha, playwright) and without the optional ones
 * (TensorFlow.js, which only training uses: `tempered-mpc train-prior`
 * runs from a checkout), rclnodejs compiled against the sourced ROS 2 (its
 * install generates the message classes, tempered_mpc_msgs included), and
 * only this machine's native builds (webgpu and rclnodejs ship every
 * platform's). Called by ros/CMakeLists.txt, again only when the lock
 * file, the pinned rclnodejs or the messages change.
 *
 *   node ros/runtime-modules.mjs PROJECT_ROOT TARGET_DIR
 */
import { execFileSync } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { join } from 'node:path';

const [root, target] = process.argv.slice(2);
if (!root || !target) {
  console.error('usage: node ros/runtime-modules.mjs PROJECT_ROOT TARGET_DIR');
  process.exit(2);
}
const pkg = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8'));
const rclnodejs = pkg.config?.rclnodejs;
if (!rclnodejs) {
  console.error(`${root}/package.json: config.rclnodejs (the pinned rclnodejs version) is missing`);
  process.exit(2);
}

mkdirSync(target, { recursive: true });
for (const file of ['package.json', 'package-lock.json']) copyFileSync(join(root, file), join(target, file));
const npm = (args) => execFileSync('npm', [...args, '--omit=dev', '--omit=optional', '--no-audit', '--no-fund'], { cwd: target, stdio: 'inherit', env: { ...process.env, npm_config_yes: 'true' } });
// the locked runtime dependencies; none needs an install script on Linux (webgpu's only clears a macOS quarantine flag)
npm(['ci', '--ignore-scripts']);
// rclnodejs's install compiles its addon against the sourced ROS 2 and generates the message classes
npm(['install', '--no-save', `rclnodejs@${rclnodejs}`]);

const modules = join(target, 'node_modules');
const platform = `${process.platform}-${process.platform === 'darwin' ? 'universal' : process.arch}`;
const keepOnly = (dir, keep) => {
  if (!existsSync(dir)) return;
  for (const entry of readdirSync(dir)) if (entry !== keep) rmSync(join(dir, entry), { recursive: true, force: true });
};
keepOnly(join(modules, 'webgpu', 'dist'), platform);
keepOnly(join(modules, 'rclnodejs', 'prebuilds'), platform);
// source maps and TypeScript declarations: nothing at run time reads them
const prune = (dir) => {
  for (const entry of readdirSync(dir)) {
    const path = join(dir, entry);
    if (statSync(path).isDirectory()) prune(path);
    else if (/\.(map|d\.ts|d\.mts|d\.cts)$/.test(entry)) rmSync(path);
  }
};
prune(modules);
