/**
 * tempered-mpc as a library: what a model author needs to write a plant of
 * their own (`export default defineModel({...})` in a module that
 * `--system ./my-robot.mjs` names), and the model registry to look one up.
 * The controller itself runs through the CLI or the ROS nodes.
 */
export { defineModel, angleError, resolveModel } from './models/model.js';
export type { ModelDefinition, ModelTuning, ParamValues, GoalRegion, ControlLimits, SensorInterface, Model } from './models/model.js';
export { num } from './params.js';
export type { NumberParam } from './params.js';
export {
  add, sub, mul, div, neg, sin, cos, asin, sqrt, exp, log, tanh, abs, min, max, atan2, gt, clamp, inside, sq, sum, dot,
  weightedSquaredError, softmax, solveSpd, rk4, euler, semiImplicitEuler,
} from './expr/expr.js';
export type { Scalar } from './expr/expr.js';
export { lqr, lqrCostToGo, lqrTerminalCost, lqrTerminalTerm } from './models/lqr.js';
export { MODELS, loadSystem, modelDefinition, isModelFile } from './models/index.js';
