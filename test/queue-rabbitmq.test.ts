import { queueSuite } from './helpers/queue-suite.js'

// The queue source against the machine's real RabbitMQ (test/helpers/queue-suite.ts has the cases, the same for each broker).
queueSuite('rabbitmq')
