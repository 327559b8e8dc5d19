// Shared by the browser tests run.sh starts.

/** The environment variable `name`, or a failed run that says to start it through run.sh. */
export function need(name) {
  const v = process.env[name];
  if (!v) {
    console.log(`FAIL  environment variable ${name} is set (run this through run.sh)`);
    console.log('RESULT passed=0 failed=1');
    process.exit(1);
  }
  return v;
}
