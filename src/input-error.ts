/**
 * Something the user gave is wrong (a flag, a parameter, a file, a message):
 * the one rule for exit codes is 2 for these and 1 for failures, so every
 * check of user input throws this class (or a subclass), wherever it sits.
 */
export class InputError extends Error {}
