/** The hand-written DNS wire codec: parse queries, index and build messages, zone-line text. */
export * from './constants.js';
export * from './name.js';
export * from './ip.js';
export * from './query.js';
export * from './message.js';
export * from './records.js';
export * from './builder.js';
export * from './response.js';
export * from './text.js';
