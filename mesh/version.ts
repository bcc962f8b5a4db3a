/** Shoal's version (package.json's; test/unit/cli-help.test.ts keeps the two equal). */
export const VERSION = '0.1.0';
