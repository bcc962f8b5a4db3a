/**
 * Names for services created without `--name`, Docker-style (`adjective-noun`, with a hyphen
 * rather than Docker's underscore: a service name is also a DNS name).
 */
import { randomInt } from 'node:crypto';

const ADJECTIVES = ['agile', 'bold', 'brave', 'bright', 'calm', 'clever', 'cool', 'eager', 'fast', 'fond', 'gentle', 'happy',
  'keen', 'kind', 'lively', 'lucid', 'merry', 'modest', 'nimble', 'proud', 'quick', 'quiet', 'sharp', 'silent', 'steady',
  'sturdy', 'swift', 'tender', 'tidy', 'vivid', 'warm', 'wise', 'witty', 'zealous'];
const NOUNS = ['anchovy', 'barracuda', 'bream', 'carp', 'cod', 'dace', 'eel', 'flounder', 'goby', 'grouper', 'haddock', 'hake',
  'herring', 'ide', 'koi', 'ling', 'mackerel', 'marlin', 'minnow', 'mullet', 'perch', 'pike', 'plaice', 'pollock', 'roach',
  'salmon', 'sardine', 'shad', 'smelt', 'sole', 'sprat', 'tench', 'trout', 'tuna', 'turbot', 'wrasse'];

/** A random `adjective-noun` (valid as a service name and a DNS label). */
export function randomName(): string {
  return `${ADJECTIVES[randomInt(ADJECTIVES.length)]}-${NOUNS[randomInt(NOUNS.length)]}`;
}
