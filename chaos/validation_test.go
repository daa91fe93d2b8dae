package chaos

// validatedService is the service the chaos load runs under validation
// (replicas 2: every item goes to two distinct workers, and a submit is a
// vote). Its workers are honest: they answer each item the same, so the
// votes always agree.
const validatedService = "dm-v"
