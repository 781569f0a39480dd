'use strict'
// Code written for EventLite Sourcing runs unchanged. The first suites are EventLite's own
// queue tests (tests/wait-conditions, correlation-causation, versioning and event-source in
// its repository), ported with this package as the queue: its models are plain objects here
// instead of bun:sqlite databases, `queue._queries.getLastRow.get()` is `getLastRow()`, and
// the timeout test moves a clock instead of sleeping. The suites after them cover each rule of
// API.md's "Wait conditions" and the details EventLite programs rely on.
const assert = require('node:assert/strict')
const { describe, test, after, tempDb, openRaw, sqlElsewhere, throwsCode } = require('./helpers')
const { initQueue, eventCallbacks } = require('..')

function open(options = {}) {
  const q = initQueue({ dbName: tempDb(), ...options })
  after(() => q.close())
  return q
}

/** EventLite's modelSetup, without its SQLite: the shape execute() reads. */
function modelSetup({ methods, migrations, queries = {}, default: fallback } = {}) {
  return {
    _queries: queries,
    _default: fallback ?? (() => ''),
    _done() {},
    _error() {},
    _migrations: migrations ? migrations() : {},
    ...(methods ? methods(queries) : {}),
    get(cmd, data) { return queries[cmd].get(data) },
  }
}

/** EventLite's createTestModel: a stub model whose default acknowledges the event. */
const createTestModel = () => modelSetup({ default: (data, meta) => ({ acknowledged: true, cmd: meta.cmd, data }) })

/** A clock for the `datetime` option that a test moves by hand. */
function clock(start = 1000) {
  const now = { ms: start }
  return { now, datetime: () => now.ms }
}

describe("EventLite's wait-conditions tests", () => {
  function ordersModel() {
    let next = 0
    return modelSetup({
      methods: () => ({
        createOrder({ userId, amount }) { return { orderId: ++next, userId, amount, status: 'pending' } },
        paymentReceived({ orderId }) { return { orderId, status: 'paid' } },
        inventoryChecked({ orderId, available }) { return { orderId, inventory: available ? 'available' : 'unavailable' } },
        processOrder({ orderId }) { return { orderId, status: 'processing' } },
      }),
    })
  }
  const setup = (options) => ({ eventQueue: open(options), testModel: ordersModel() })

  test('should store event with wait conditions', () => {
    const { eventQueue, testModel } = setup()
    const correlationId = 'order-123'
    const result = eventQueue.storeWhen({
      cmd: 'processOrder', data: { orderId: 123 }, correlationId,
      waitFor: { all: [{ pattern: 'paymentReceived', correlationId }, { pattern: 'inventoryChecked', correlationId }] },
      timeout: 60000,
    }, testModel, eventCallbacks.void)
    assert.equal(result.status, 'pending')
    assert.ok(result.pendingEventId > 0)
  })

  test('should execute pending event when all conditions are met', async () => {
    const { eventQueue, testModel } = setup()
    const correlationId = 'order-456'
    await eventQueue.store({ cmd: 'createOrder', data: { userId: 'user1', amount: 100 }, correlationId }, testModel, eventCallbacks.void)
    const waitResult = eventQueue.storeWhen({
      cmd: 'processOrder', data: { orderId: 456 }, correlationId,
      waitFor: { all: [{ pattern: 'paymentReceived', correlationId }, { pattern: 'inventoryChecked', correlationId }] },
    }, testModel, eventCallbacks.void)
    assert.equal(waitResult.status, 'pending')
    assert.equal(eventQueue.checkAllPendingEvents().length, 0)
    await eventQueue.store({ cmd: 'paymentReceived', data: { orderId: 456 }, correlationId, causationId: 1 }, testModel, eventCallbacks.void)
    assert.equal(eventQueue.checkAllPendingEvents().length, 0)
    await eventQueue.store({ cmd: 'inventoryChecked', data: { orderId: 456, available: true }, correlationId, causationId: 1 }, testModel, eventCallbacks.void)
    assert.equal(eventQueue.checkAllPendingEvents().length, 1)
    const executedEvents = eventQueue.executeReadyEvents(testModel, eventCallbacks.void)
    assert.equal(executedEvents.length, 1)
    assert.equal(executedEvents[0].result.orderId, 456)
  })

  test('should handle count conditions', async () => {
    const { eventQueue, testModel } = setup()
    const correlationId = 'approval-789'
    const waitResult = eventQueue.storeWhen({
      cmd: 'processApproval', data: { requestId: 789 }, correlationId,
      waitFor: { count: { pattern: 'approved', correlationId, count: 3 } },
    }, testModel, eventCallbacks.void)
    assert.equal(waitResult.status, 'pending')
    await eventQueue.store({ cmd: 'approved', data: { requestId: 789, approver: 'manager1' }, correlationId }, testModel, eventCallbacks.void)
    await eventQueue.store({ cmd: 'approved', data: { requestId: 789, approver: 'manager2' }, correlationId }, testModel, eventCallbacks.void)
    assert.equal(eventQueue.checkAllPendingEvents().length, 0)
    await eventQueue.store({ cmd: 'approved', data: { requestId: 789, approver: 'manager3' }, correlationId }, testModel, eventCallbacks.void)
    assert.equal(eventQueue.checkAllPendingEvents().length, 1)
  })

  test('should handle timeout and expiration', () => {
    const time = clock()
    const { eventQueue, testModel } = setup({ datetime: time.datetime })
    const correlationId = 'timeout-test'
    const waitResult = eventQueue.storeWhen({
      cmd: 'processOrder', data: { orderId: 999 }, correlationId,
      waitFor: { all: [{ pattern: 'paymentReceived', correlationId }] },
      timeout: 100,
    }, testModel, eventCallbacks.void)
    assert.equal(waitResult.status, 'pending')
    time.now.ms += 150 // EventLite's test sleeps 150 ms
    const expiredEvents = eventQueue.expirePendingEvents()
    assert.equal(expiredEvents.length, 1)
    assert.equal(expiredEvents[0].id, waitResult.pendingEventId)
  })

  test('should support event cancellation', async () => {
    const { eventQueue, testModel } = setup()
    const correlationId = 'cancel-test'
    const waitResult = eventQueue.storeWhen({
      cmd: 'processOrder', data: { orderId: 888 }, correlationId, waitFor: { all: [{ pattern: 'paymentReceived', correlationId }] },
    }, testModel, eventCallbacks.void)
    assert.equal(waitResult.status, 'pending')
    assert.equal(eventQueue.cancelPendingEvent(waitResult.pendingEventId), true)
    assert.equal(eventQueue.cancelPendingEvent(waitResult.pendingEventId), false)
    await eventQueue.store({ cmd: 'paymentReceived', data: { orderId: 888 }, correlationId }, testModel, eventCallbacks.void)
    assert.equal(eventQueue.checkAllPendingEvents().length, 0)
  })

  test('should fallback to regular store when no waitFor is provided', () => {
    const { eventQueue, testModel } = setup()
    const result = eventQueue.storeWhen({ cmd: 'createOrder', data: { userId: 'user1', amount: 50 } }, testModel, eventCallbacks.void)
    assert.ok(result.orderId > 0)
    assert.equal(result.status, 'pending')
    assert.equal(result.userId, 'user1')
  })

  test("should handle 'any' conditions correctly", async () => {
    const { eventQueue, testModel } = setup()
    const correlationId = 'any-test'
    const waitResult = eventQueue.storeWhen({
      cmd: 'processRequest', data: { requestId: 999 }, correlationId,
      waitFor: { any: [{ pattern: 'managerApproved', correlationId }, { pattern: 'directorApproved', correlationId }] },
    }, testModel, eventCallbacks.void)
    assert.equal(waitResult.status, 'pending')
    await eventQueue.store({ cmd: 'managerApproved', data: { requestId: 999, approver: 'manager1' }, correlationId }, testModel, eventCallbacks.void)
    assert.equal(eventQueue.checkAllPendingEvents().length, 1)
    assert.equal(eventQueue.executeReadyEvents(testModel, eventCallbacks.void).length, 1)
  })

  test('should handle sequence conditions', async () => {
    const { eventQueue, testModel } = setup()
    const correlationId = 'sequence-test'
    const waitResult = eventQueue.storeWhen({
      cmd: 'finalizeWorkflow', data: { workflowId: 555 }, correlationId,
      waitFor: { sequence: [{ pattern: 'step1Complete', correlationId }, { pattern: 'step2Complete', correlationId }, { pattern: 'step3Complete', correlationId }] },
    }, testModel, eventCallbacks.void)
    assert.equal(waitResult.status, 'pending')
    await eventQueue.store({ cmd: 'step3Complete', data: { workflowId: 555 }, correlationId }, testModel, eventCallbacks.void)
    await eventQueue.store({ cmd: 'step1Complete', data: { workflowId: 555 }, correlationId }, testModel, eventCallbacks.void)
    assert.equal(eventQueue.checkAllPendingEvents().length, 0)
    await eventQueue.store({ cmd: 'step2Complete', data: { workflowId: 555 }, correlationId }, testModel, eventCallbacks.void)
    assert.equal(eventQueue.checkAllPendingEvents().length, 1)
  })

  test('should handle conditions with property filters', async () => {
    const { eventQueue, testModel } = setup()
    const correlationId = 'property-test'
    const waitResult = eventQueue.storeWhen({
      cmd: 'processLoan', data: { loanId: 777 }, correlationId,
      waitFor: { count: { pattern: 'approved', correlationId, count: 2, where: { amount: { $gte: 1000 } } } },
    }, testModel, eventCallbacks.void)
    assert.equal(waitResult.status, 'pending')
    await eventQueue.store({ cmd: 'approved', data: { loanId: 777, amount: 500, approver: 'low-approval' }, correlationId }, testModel, eventCallbacks.void)
    await eventQueue.store({ cmd: 'approved', data: { loanId: 777, amount: 1500, approver: 'high-approval-1' }, correlationId }, testModel, eventCallbacks.void)
    assert.equal(eventQueue.checkAllPendingEvents().length, 0)
    await eventQueue.store({ cmd: 'approved', data: { loanId: 777, amount: 2000, approver: 'high-approval-2' }, correlationId }, testModel, eventCallbacks.void)
    assert.equal(eventQueue.checkAllPendingEvents().length, 1)
  })

  test('should handle mixed wait types', async () => {
    const { eventQueue, testModel } = setup()
    const correlationId = 'mixed-test'
    const waitResult = eventQueue.storeWhen({
      cmd: 'processComplexRequest', data: { requestId: 888 }, correlationId,
      waitFor: {
        all: [{ pattern: 'managerApproved', correlationId }],
        any: [{ pattern: 'directorApproved', correlationId }, { pattern: 'adminOverride', correlationId }],
      },
    }, testModel, eventCallbacks.void)
    assert.equal(waitResult.status, 'pending')
    await eventQueue.store({ cmd: 'managerApproved', data: { requestId: 888 }, correlationId }, testModel, eventCallbacks.void)
    assert.equal(eventQueue.checkAllPendingEvents().length, 0)
    await eventQueue.store({ cmd: 'adminOverride', data: { requestId: 888 }, correlationId }, testModel, eventCallbacks.void)
    assert.equal(eventQueue.checkAllPendingEvents().length, 1)
  })

  test('should not execute cancelled events even when conditions are met', async () => {
    const { eventQueue, testModel } = setup()
    const correlationId = 'cancel-condition-test'
    const waitResult = eventQueue.storeWhen({
      cmd: 'processOrder', data: { orderId: 111 }, correlationId, waitFor: { all: [{ pattern: 'paymentReceived', correlationId }] },
    }, testModel, eventCallbacks.void)
    assert.equal(eventQueue.cancelPendingEvent(waitResult.pendingEventId), true)
    await eventQueue.store({ cmd: 'paymentReceived', data: { orderId: 111 }, correlationId }, testModel, eventCallbacks.void)
    assert.equal(eventQueue.checkAllPendingEvents().length, 0)
    assert.equal(eventQueue.executeReadyEvents(testModel, eventCallbacks.void).length, 0)
  })
})

describe("EventLite's correlation-causation tests", () => {
  const setup = () => ({ eventQueue: open({ risky: true }), model: createTestModel() })
  const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/

  test('should generate correlation ID for new transactions', async () => {
    const { eventQueue, model } = setup()
    await eventQueue.store({ cmd: 'startTransaction', data: { value: 42 } }, model, eventCallbacks.void)
    const event = eventQueue.retrieveByID(1)
    assert.match(event.correlation_id, UUID)
    assert.equal(event.causation_id, null)
  })

  test('should use provided correlation ID', async () => {
    const { eventQueue, model } = setup()
    await eventQueue.store({ cmd: 'testCommand', data: { value: 42 }, correlationId: 'test-correlation-123' }, model, eventCallbacks.void)
    assert.equal(eventQueue.retrieveByID(1).correlation_id, 'test-correlation-123')
  })

  test('should inherit correlation ID from parent event', async () => {
    const { eventQueue, model } = setup()
    await eventQueue.store({ cmd: 'parentEvent', data: { value: 1 } }, model, eventCallbacks.void)
    const parentCorrelationId = eventQueue.retrieveByID(1).correlation_id
    await eventQueue.store({ cmd: 'childEvent', data: { value: 2 }, causationId: 1 }, model, eventCallbacks.void)
    const childEvent = eventQueue.retrieveByID(2)
    assert.equal(childEvent.correlation_id, parentCorrelationId)
    assert.equal(childEvent.causation_id, 1)
  })

  test('should store and retrieve metadata', async () => {
    const { eventQueue, model } = setup()
    const metadata = { service: 'user-service', version: '1.2.3', environment: 'test' }
    await eventQueue.store({ cmd: 'metadataTest', data: { value: 42 }, metadata }, model, eventCallbacks.void)
    assert.deepEqual(eventQueue.retrieveByID(1).metadata, metadata)
  })

  test('should get all events in a transaction', async () => {
    const { eventQueue, model } = setup()
    const correlationId = 'transaction-123'
    await eventQueue.store({ cmd: 'createOrder', data: { orderId: 1 }, correlationId }, model, eventCallbacks.void)
    await eventQueue.store({ cmd: 'processPayment', data: { orderId: 1, amount: 99.99 }, correlationId, causationId: 1 }, model, eventCallbacks.void)
    await eventQueue.store({ cmd: 'sendEmail', data: { orderId: 1 }, correlationId, causationId: 2 }, model, eventCallbacks.void)
    const transaction = eventQueue.getTransaction(correlationId)
    assert.deepEqual(transaction.map((e) => e.cmd), ['createOrder', 'processPayment', 'sendEmail'])
    assert.ok(transaction.every((e) => e.correlation_id === correlationId))
  })

  test('should get child events', async () => {
    const { eventQueue, model } = setup()
    await eventQueue.store({ cmd: 'parentCommand', data: { value: 1 } }, model, eventCallbacks.void)
    await eventQueue.store({ cmd: 'childCommand1', data: { value: 2 }, causationId: 1 }, model, eventCallbacks.void)
    await eventQueue.store({ cmd: 'childCommand2', data: { value: 3 }, causationId: 1 }, model, eventCallbacks.void)
    await eventQueue.store({ cmd: 'grandchildCommand', data: { value: 4 }, causationId: 2 }, model, eventCallbacks.void)
    assert.deepEqual(eventQueue.getChildEvents(1).map((c) => c.cmd), ['childCommand1', 'childCommand2'])
  })

  test('should get event lineage', async () => {
    const { eventQueue, model } = setup()
    await eventQueue.store({ cmd: 'rootEvent', data: { level: 0 } }, model, eventCallbacks.void)
    await eventQueue.store({ cmd: 'middleEvent', data: { level: 1 }, causationId: 1 }, model, eventCallbacks.void)
    await eventQueue.store({ cmd: 'leafEvent', data: { level: 2 }, causationId: 2 }, model, eventCallbacks.void)
    const lineage = eventQueue.getEventLineage(2)
    assert.equal(lineage.event.cmd, 'middleEvent')
    assert.equal(lineage.parent.cmd, 'rootEvent')
    assert.deepEqual(lineage.children.map((c) => c.cmd), ['leafEvent'])
  })

  test('should handle null lineage for non-existent event', () => {
    assert.equal(setup().eventQueue.getEventLineage(999), null)
  })

  test('should use storeWithContext helper', async () => {
    const { eventQueue, model } = setup()
    const context = { correlationId: 'context-123', metadata: { service: 'test-service', userId: 'user-456' } }
    await eventQueue.storeWithContext({ cmd: 'contextTest', data: { value: 42 } }, context, model, eventCallbacks.void)
    const event = eventQueue.retrieveByID(1)
    assert.equal(event.correlation_id, 'context-123')
    assert.equal(event.metadata.service, 'test-service')
    assert.equal(event.metadata.userId, 'user-456')
  })

  test('should handle complex context inheritance', async () => {
    const { eventQueue, model } = setup()
    await eventQueue.store({ cmd: 'first', data: { step: 1 }, metadata: { original: true } }, model, eventCallbacks.void)
    await eventQueue.storeWithContext({ cmd: 'second', data: { step: 2 }, metadata: { own: 'data' } }, { parentEventId: 1, metadata: { additional: 'info' } }, model, eventCallbacks.void)
    const secondEvent = eventQueue.retrieveByID(2)
    assert.equal(secondEvent.causation_id, 1)
    assert.equal(secondEvent.correlation_id, eventQueue.retrieveByID(1).correlation_id)
    assert.deepEqual(secondEvent.metadata, { own: 'data', additional: 'info' })
  })

  test('should handle correlation ID in event replay', async () => {
    const { eventQueue } = setup()
    const correlationId = 'replay-test-123'
    const events = []
    const captureModel = modelSetup({ methods: () => ({ captureEvent(data, metadata) { events.push({ data, metadata }); return { captured: true } } }) })
    await eventQueue.store({ cmd: 'captureEvent', data: { id: 1 }, correlationId }, captureModel, eventCallbacks.void)
    await eventQueue.store({ cmd: 'captureEvent', data: { id: 2 }, correlationId, causationId: 1 }, captureModel, eventCallbacks.void)
    events.length = 0
    eventQueue.cycleThrough(captureModel, () => {}, eventCallbacks.void, { start: 0 })
    assert.equal(events.length, 2)
    assert.equal(events[0].metadata.correlationId, correlationId)
    assert.equal(events[1].metadata.correlationId, correlationId)
    assert.equal(events[1].metadata.causationId, 1)
  })

  test('should create event trees with correlation IDs', async () => {
    const { eventQueue, model } = setup()
    const correlationId = 'tree-test-123'
    await eventQueue.store({ cmd: 'createOrder', data: { orderId: 100 }, correlationId }, model, eventCallbacks.void)
    await eventQueue.store({ cmd: 'processPayment', data: { orderId: 100, amount: 50 }, causationId: 1 }, model, eventCallbacks.void)
    await eventQueue.store({ cmd: 'checkInventory', data: { orderId: 100 }, causationId: 1 }, model, eventCallbacks.void)
    await eventQueue.store({ cmd: 'completePayment', data: { orderId: 100 }, causationId: 2 }, model, eventCallbacks.void)
    await eventQueue.store({ cmd: 'sendNotification', data: { orderId: 100, type: 'payment' }, causationId: 4 }, model, eventCallbacks.void)
    assert.deepEqual(eventQueue.getEventLineage(1).children.map((c) => c.cmd).sort(), ['checkInventory', 'processPayment'])
    const paymentLineage = eventQueue.getEventLineage(2)
    assert.equal(paymentLineage.parent.cmd, 'createOrder')
    assert.deepEqual(paymentLineage.children.map((c) => c.cmd), ['completePayment'])
    const allEvents = eventQueue.getTransaction(correlationId)
    assert.equal(allEvents.length, 5)
    assert.ok(allEvents.every((e) => e.correlation_id === correlationId))
  })

  test('should handle missing parent when inheriting correlation ID', async () => {
    const { eventQueue, model } = setup()
    await eventQueue.store({ cmd: 'orphanEvent', data: { value: 42 }, causationId: 999 }, model, eventCallbacks.void)
    const event = eventQueue.retrieveByID(1)
    assert.notEqual(event.correlation_id, undefined)
    assert.equal(event.causation_id, 999)
  })

  test('should preserve all IDs during cycleThrough', async () => {
    const { eventQueue, model } = setup()
    const correlationId = 'cycle-test'
    const metadata = { source: 'test' }
    await eventQueue.store({ cmd: 'testEvent', data: { value: 1 }, correlationId, metadata }, model, eventCallbacks.void)
    await eventQueue.store({ cmd: 'childEvent', data: { value: 2 }, causationId: 1, metadata: { ...metadata, child: true } }, model, eventCallbacks.void)
    const storedEvents = eventQueue.getTransaction(correlationId)
    assert.equal(storedEvents.length, 2)
    assert.equal(storedEvents[0].metadata.source, 'test')
    assert.equal(storedEvents[1].metadata.child, true)
  })
})

describe("EventLite's versioning tests", () => {
  const setup = () => open({ risky: true })

  test('should store events with version numbers, version 1 by default', async () => {
    const eventQueue = setup()
    await eventQueue.store({ cmd: 'testCommand', data: { value: 42 }, version: 2 }, createTestModel(), eventCallbacks.void)
    await eventQueue.store({ cmd: 'testCommand', data: { value: 42 } }, createTestModel(), eventCallbacks.void)
    assert.equal(eventQueue.retrieveByID(1).version, 2)
    assert.equal(eventQueue.retrieveByID(2).version, 1)
  })

  test('should apply migrations when executing old events', async () => {
    const eventQueue = setup()
    const users = new Map()
    const model = modelSetup({
      queries: {
        insertUser: { run: ({ id, status }) => users.set(id, { id, status }) },
        updateStatus: { run: ({ id, status }) => users.set(id, { ...users.get(id), status }) },
        getUser: { get: ({ id }) => users.get(id) },
      },
      methods: (queries) => ({
        createUser({ userId }) { queries.insertUser.run({ id: userId, status: 'active' }); return { userId } },
        updateStatus({ userId, status }) { queries.updateStatus.run({ id: userId, status }); return { userId, status } },
      }),
      migrations: () => ({
        updateStatus: [
          (data) => {
            const statusMap = { inactive: 'disabled', active: 'enabled' }
            return statusMap[data.status] ? { ...data, status: statusMap[data.status] } : data
          },
          (data) => ({ ...data, metadata: { migrated: true, originalStatus: data.status } }),
        ],
      }),
    })
    await eventQueue.store({ cmd: 'createUser', data: { userId: 1 } }, model, eventCallbacks.void)
    await eventQueue.store({ cmd: 'updateStatus', data: { userId: 1, status: 'inactive' }, version: 1 }, model, eventCallbacks.void)
    assert.equal(model._queries.getUser.get({ id: 1 }).status, 'disabled')
  })

  test('should handle multiple migration steps', async () => {
    const eventQueue = setup()
    let capturedData
    const model = modelSetup({
      methods: () => ({ processData(data) { capturedData = data; return { processed: true } } }),
      migrations: () => ({ processData: [(d) => ({ ...d, step1: true }), (d) => ({ ...d, step2: true }), (d) => ({ ...d, step3: true })] }),
    })
    await eventQueue.store({ cmd: 'processData', data: { original: true }, version: 1 }, model, eventCallbacks.void)
    assert.deepEqual(capturedData, { original: true, step1: true, step2: true, step3: true })
    await eventQueue.store({ cmd: 'processData', data: { original: true }, version: 3 }, model, eventCallbacks.void)
    assert.deepEqual(capturedData, { original: true, step3: true })
  })

  test('should handle events without migrations', async () => {
    const eventQueue = setup()
    const model = modelSetup({ methods: () => ({ noMigration(data) { return { ...data, processed: true } } }) })
    assert.deepEqual(await eventQueue.store({ cmd: 'noMigration', data: { value: 42 }, version: 1 }, model, eventCallbacks.void), { value: 42, processed: true })
  })

  test('should preserve version information during replay', async () => {
    const eventQueue = setup()
    const events = []
    const tracking = () => modelSetup({ methods: () => ({ trackVersion(data, metadata) { events.push({ data, version: metadata.version }); return { tracked: true } } }) })
    const model = tracking()
    for (const version of [1, 2, 3]) await eventQueue.store({ cmd: 'trackVersion', data: { id: version }, version }, model, eventCallbacks.void)
    events.length = 0
    eventQueue.cycleThrough(tracking(), () => {}, eventCallbacks.void, { start: 0 })
    assert.deepEqual(events, [{ data: { id: 1 }, version: 1 }, { data: { id: 2 }, version: 2 }, { data: { id: 3 }, version: 3 }])
  })

  test('should handle migration errors gracefully', async () => {
    const eventQueue = setup()
    const errors = []
    const model = modelSetup({
      methods: () => ({ faultyMigration() { return { processed: true } } }),
      migrations: () => ({ faultyMigration: [() => { throw new Error('Migration failed') }] }),
    })
    await eventQueue.store({ cmd: 'faultyMigration', data: { value: 42 }, version: 1 }, model, { _default() {}, _error: (err) => errors.push(err) })
    assert.equal(errors.length, 1)
    assert.match(errors[0].error.message, /Migration failed/)
  })
})

describe("EventLite's event-source tests (the queue's part)", () => {
  const mockModel = (extra) => ({ _done() {}, _error() {}, default: () => '', ...extra })

  test('a custom datetime function is what is stored', () => {
    const queue = open({ datetime: () => 12345 })
    queue.store({ cmd: 'testCmd', data: {} }, mockModel({ testCmd: () => 'success' }), { _default() {}, _error() {} })
    assert.equal(queue.getLastRow().datetime, 12345)
  })

  test('should store and execute a command', () => {
    const queue = open({ risky: true })
    const results = []
    const returnValue = queue.store(
      { cmd: 'testCmd', data: { value: 42 }, user: 'testuser', ip: '127.0.0.1' },
      mockModel({ testCmd: (data) => ({ result: 'success', value: data.value }) }),
      { _default: (res, row) => results.push({ res, row }), _error() {} },
    )
    assert.equal(results.length, 1)
    assert.deepEqual(results[0].res, { result: 'success', value: 42 })
    assert.equal(results[0].row.cmd, 'testCmd')
    assert.equal(results[0].row.user, 'testuser')
    assert.equal(results[0].row.ip, '127.0.0.1')
    assert.deepEqual(returnValue, { result: 'success', value: 42 })
  })

  test('should handle missing command', () => {
    const queue = open({ risky: true })
    const errors = []
    queue.store({ data: {} }, mockModel(), { _default() {}, _error: (err) => errors.push(err) })
    assert.equal(errors.length, 1)
    assert.match(errors[0].msg, /No command given/)
  })

  test('execute: model methods, model._default, errors, command-specific callbacks', () => {
    const queue = open()
    const row = { id: 1, datetime: Date.now(), user: 'testuser', ip: '127.0.0.1', cmd: 'testCmd', data: { test: 'data' } }
    const res = queue.execute(row, mockModel({ testCmd: (data, meta) => ({ result: 'executed', receivedData: data, receivedMeta: meta }) }), { _default() {}, _error() {} })
    assert.equal(res.result, 'executed')
    assert.deepEqual(res.receivedData, { test: 'data' })
    assert.equal(res.receivedMeta.user, 'testuser')
    const byDefault = queue.execute({ ...row, cmd: 'unknownCmd', data: {} }, { _default: (data, meta) => ({ handled: 'by default', cmd: meta.cmd }), _queries: {}, _done() {}, _error() {} }, { _default() {}, _error() {} })
    assert.deepEqual(byDefault, { handled: 'by default', cmd: 'unknownCmd' })
    const errors = []
    queue.execute({ ...row, cmd: 'errorCmd', data: {} }, mockModel({ errorCmd: () => { throw new Error('Command failed') } }), { _default() {}, _error: (err) => errors.push(err) })
    assert.equal(errors[0].error.message, 'Command failed')
    assert.equal(errors[0].cmd, 'errorCmd')
    const results = []
    queue.execute({ ...row, cmd: 'specialCmd', data: {} }, mockModel({ specialCmd: () => 'special result' }), {
      specialCmd: (res, r) => results.push({ type: 'special', res, cmd: r.cmd }),
      _default: () => results.push({ type: 'default' }),
      _error() {},
    })
    assert.deepEqual(results, [{ type: 'special', res: 'special result', cmd: 'specialCmd' }])
  })

  test('cycleThrough from a start id, and an empty queue; reset empties the queue', () => {
    const queue = open({ risky: true })
    const model = mockModel({ cmd1: () => 'result1', cmd2: () => 'result2', cmd3: () => 'result3' })
    let doneCalled = false
    queue.cycleThrough(model, () => { doneCalled = true }, { _default() { throw new Error('no events') }, _error() {} }, { start: 0 })
    assert.equal(doneCalled, true)
    for (const n of [1, 2, 3]) queue.store({ cmd: `cmd${n}`, data: { n } }, model, { _default() {}, _error() {} })
    const seen = []
    queue.cycleThrough(model, () => {}, { _default: (res, row) => seen.push(row.cmd), _error() {} }, { start: 2 })
    assert.deepEqual(seen, ['cmd2', 'cmd3'])
    queue.reset()
    assert.equal(queue.getLastRow(), null)
  })

  test('eventCallbacks: stub logs both, error logs only errors, through console.log', () => {
    const logs = []
    const { log } = console
    console.log = (...args) => logs.push(args)
    try {
      eventCallbacks.stub._default('test result', { cmd: 'testCmd', data: { test: true } })
      eventCallbacks.stub._error({ msg: 'test error', error: new Error('fail'), cmd: 'errorCmd', data: {} })
      eventCallbacks.error._default('result', {})
      eventCallbacks.error._error({ msg: 'error occurred', error: new Error('test'), cmd: 'testCmd', data: {} })
      eventCallbacks.void._default('result', {})
      eventCallbacks.void._error({})
    } finally {
      console.log = log
    }
    assert.equal(logs.length, 3)
    assert.match(logs[0].join(' '), /testCmd/)
    assert.ok(logs[1].includes('test error'))
    assert.ok(logs[2].includes('error occurred'))
  })
})

/** EventLite's statements for its tables, exactly as its initQueue runs them. */
const EVENTLITE_SCHEMA = [
  'CREATE TABLE IF NOT EXISTS queue ( id INTEGER PRIMARY KEY AUTOINCREMENT, version INTEGER DEFAULT 1, datetime INTEGER NOT NULL, user TEXT, ip TEXT, cmd TEXT NOT NULL, data TEXT, correlation_id TEXT, causation_id INTEGER, metadata TEXT); ',
  `
    CREATE TABLE IF NOT EXISTS pending_events (
      id INTEGER PRIMARY KEY AUTOINCREMENT,
      event_data TEXT NOT NULL,
      wait_conditions TEXT NOT NULL,
      created_at INTEGER NOT NULL,
      expires_at INTEGER,
      correlation_id TEXT,
      status TEXT DEFAULT 'pending' CHECK(status IN ('pending', 'ready', 'expired', 'executed', 'cancelled'))
    );
  `,
  `
    CREATE TABLE IF NOT EXISTS wait_conditions (
      id INTEGER PRIMARY KEY AUTOINCREMENT,
      pending_event_id INTEGER NOT NULL,
      condition_type TEXT NOT NULL,
      condition_data TEXT NOT NULL,
      satisfied BOOLEAN DEFAULT FALSE,
      FOREIGN KEY (pending_event_id) REFERENCES pending_events(id) ON DELETE CASCADE
    );
  `,
  'CREATE INDEX IF NOT EXISTS idx_correlation_id ON queue(correlation_id)',
  'CREATE INDEX IF NOT EXISTS idx_causation_id ON queue(causation_id)',
  'CREATE INDEX IF NOT EXISTS idx_pending_status ON pending_events(status)',
  'CREATE INDEX IF NOT EXISTS idx_pending_correlation ON pending_events(correlation_id)',
  'CREATE INDEX IF NOT EXISTS idx_pending_expires ON pending_events(expires_at)',
  'CREATE INDEX IF NOT EXISTS idx_wait_conditions_pending ON wait_conditions(pending_event_id)',
  'CREATE INDEX IF NOT EXISTS idx_wait_conditions_satisfied ON wait_conditions(satisfied)',
]

/**
 * SQL that stores a pending event as EventLite's storeWhen does: its texts made by
 * JSON.stringify the way EventLite makes them, `satisfied` false (0).
 */
function eventLitePending({ event, waitFor, createdAt = 1, expiresAt = null, status = 'pending' }) {
  const text = (value) => `'${JSON.stringify(value).replaceAll("'", "''")}'`
  const rows = []
  for (const [key, type] of [['all', 'all_condition'], ['any', 'any_condition'], ['count', 'count_condition'], ['sequence', 'sequence_condition']]) {
    if (!waitFor[key]) continue
    if (key === 'count') rows.push([type, waitFor.count])
    else waitFor[key].forEach((c, index) => rows.push([type, key === 'sequence' ? { ...c, index, order: index } : { ...c, index }]))
  }
  return `INSERT INTO pending_events (event_data, wait_conditions, created_at, expires_at, correlation_id, status)
      VALUES (${text(event)}, ${text(waitFor)}, ${createdAt}, ${expiresAt ?? 'NULL'}, ${event.correlationId ? text(event.correlationId).replaceAll('"', '') : 'NULL'}, '${status}');
    ${rows.map(([type, data]) => `INSERT INTO wait_conditions (pending_event_id, condition_type, condition_data, satisfied)
      VALUES ((SELECT MAX(id) FROM pending_events), '${type}', ${text(data)}, 0);`).join('\n')}`
}

/** What a file holds, read with the runtime's own driver once every queue on it is closed. */
function readFile(file, sql) {
  const raw = openRaw(file)
  try {
    return raw.all(sql)
  } finally {
    raw.close()
  }
}

/** A model that records the cmd and data of each event it executes. */
function recorder() {
  const seen = []
  return { seen, model: { _queries: {}, _default(data, meta) { seen.push([meta.cmd, data]); return meta.cmd } } }
}

describe('wait conditions: the file is shared with EventLite', () => {
  test("the tables and indexes are EventLite's, statement for statement", () => {
    const ours = tempDb()
    initQueue({ dbName: ours }).close()
    const theirs = tempDb()
    const raw = openRaw(theirs)
    for (const sql of EVENTLITE_SCHEMA) raw.exec(sql)
    raw.close()
    const schema = (file) => readFile(file, "SELECT type, name, tbl_name, sql FROM sqlite_master WHERE tbl_name IN ('pending_events', 'wait_conditions') ORDER BY name")
    const expected = schema(theirs)
    assert.equal(expected.length, 7)
    assert.deepEqual(schema(ours), expected)
  })

  test('pending events EventLite wrote are evaluated and executed by this queue, and it records what EventLite records', () => {
    const file = tempDb()
    const raw = openRaw(file)
    for (const sql of EVENTLITE_SCHEMA) raw.exec(sql)
    raw.exec("INSERT INTO queue (datetime, user, ip, cmd, data, correlation_id, metadata) VALUES (1, '', '', 'paymentReceived', '{\"orderId\":7}', 'order-7', '{}')")
    raw.exec(eventLitePending({
      event: { cmd: 'processOrder', data: { orderId: 7 }, user: 'ann', ip: '10.0.0.1', version: 1, correlationId: 'order-7', metadata: { m: 1 } },
      waitFor: { all: [{ pattern: 'paymentReceived', correlationId: 'order-7' }, { pattern: 'inventoryChecked', correlationId: 'order-7' }] },
      createdAt: 5,
    }))
    raw.exec(eventLitePending({
      event: { cmd: 'alreadyReady', data: {}, user: '', ip: '', version: 1, correlationId: 'other', metadata: {} },
      waitFor: { any: [{ pattern: 'x', correlationId: 'other' }] },
      createdAt: 3,
      status: 'ready',
    }))
    raw.close()

    const q = initQueue({ dbName: file })
    const [waiting] = q.getPendingEventsByCorrelation('order-7')
    assert.equal(waiting.status, 'pending')
    assert.equal(waiting.event_data, JSON.stringify({ cmd: 'processOrder', data: { orderId: 7 }, user: 'ann', ip: '10.0.0.1', version: 1, correlationId: 'order-7', metadata: { m: 1 } }))
    q.store({ cmd: 'inventoryChecked', data: { orderId: 7 }, correlationId: 'order-7' })
    assert.deepEqual(q.getPendingEventsByCorrelation('order-7'), [], 'ready after the store, without checkAllPendingEvents')
    const { seen, model } = recorder()
    const executed = q.executeReadyEvents(model)
    assert.deepEqual(executed.map((e) => e.pendingEvent.event_data && JSON.parse(e.pendingEvent.event_data).cmd), ['alreadyReady', 'processOrder'], 'oldest first')
    assert.deepEqual(seen, [['alreadyReady', {}], ['processOrder', { orderId: 7 }]])
    const stored = q.getLastRow()
    assert.deepEqual([stored.cmd, stored.user, stored.ip, stored.correlation_id, stored.metadata], ['processOrder', 'ann', '10.0.0.1', 'order-7', { m: 1 }])
    q.close()

    assert.deepEqual(readFile(file, 'SELECT id, status FROM pending_events ORDER BY id'), [{ id: 1, status: 'executed' }, { id: 2, status: 'executed' }])
    assert.deepEqual(readFile(file, 'SELECT satisfied FROM wait_conditions WHERE pending_event_id = 1 ORDER BY id').map((r) => r.satisfied), [1, 1])
  })

  test('a pending event this queue stores is what EventLite stores', () => {
    const file = tempDb()
    const time = clock(5000)
    const q = initQueue({ dbName: file, datetime: time.datetime })
    const waitFor = {
      all: [{ pattern: 'paid', correlationId: 'o', where: { amount: { $gte: 10 } } }],
      any: [{ pattern: 'approved', correlationId: 'o' }, { pattern: 'overridden', correlationId: 'o', minCount: 2 }],
      count: { pattern: 'scanned', correlationId: 'o', count: 2 },
      sequence: [{ pattern: 'packed', correlationId: 'o' }, { pattern: 'shipped', correlationId: 'o' }],
    }
    const event = { cmd: 'close', data: { n: 1 }, user: 'ann', ip: 'ip', version: 2, correlationId: 'o', metadata: { via: 'test' } }
    const { pendingEventId, status } = q.storeWhen({ ...event, waitFor, timeout: 250 })
    assert.deepEqual([pendingEventId, status], [1, 'pending'])
    q.store({ cmd: 'approved', correlationId: 'o' })
    q.close()

    assert.deepEqual(readFile(file, 'SELECT * FROM pending_events'), [{
      id: 1,
      event_data: JSON.stringify({ cmd: 'close', data: { n: 1 }, user: 'ann', ip: 'ip', version: 2, correlationId: 'o', metadata: { via: 'test' } }),
      wait_conditions: JSON.stringify(waitFor),
      created_at: 5000,
      expires_at: 5250,
      correlation_id: 'o',
      status: 'pending',
    }])
    assert.deepEqual(readFile(file, 'SELECT pending_event_id, condition_type, condition_data, satisfied FROM wait_conditions ORDER BY id'), [
      ['all_condition', { ...waitFor.all[0], index: 0 }, 0],
      ['any_condition', { ...waitFor.any[0], index: 0 }, 1],
      ['any_condition', { ...waitFor.any[1], index: 1 }, 0],
      ['count_condition', waitFor.count, 0],
      ['sequence_condition', { ...waitFor.sequence[0], index: 0, order: 0 }, 0],
      ['sequence_condition', { ...waitFor.sequence[1], index: 1, order: 1 }, 0],
    ].map(([type, data, satisfied]) => ({ pending_event_id: 1, condition_type: type, condition_data: JSON.stringify(data), satisfied })))
  })

  test("a pending event another process adds is evaluated by this queue's next write", () => {
    const file = tempDb()
    const q = initQueue({ dbName: file })
    q.store({ cmd: 'warm', correlationId: 'w' })
    sqlElsewhere(file, eventLitePending({
      event: { cmd: 'go', data: {}, user: '', ip: '', version: 1, correlationId: 'x', metadata: {} },
      waitFor: { all: [{ pattern: 'went', correlationId: 'x' }] },
    }))
    assert.equal(q.getPendingEventsByCorrelation('x').length, 1)
    q.store({ cmd: 'went', correlationId: 'x' })
    assert.deepEqual(q.getPendingEventsByCorrelation('x'), [])
    assert.deepEqual(q.executeReadyEvents().map((e) => e.result.cmd), ['go'])
    q.close()
  })
})

describe('wait conditions: storeWhen', () => {
  const WAIT = (correlationId, extra = {}) => ({ all: [{ pattern: 'paid', correlationId, ...extra }] })
  const pendingCount = (q, correlationId) => q.getPendingEventsByCorrelation(correlationId).length

  test('ready is visible to the next call after every kind of write', () => {
    const q = open()
    q.storeWhen({ cmd: 'a', correlationId: 's', waitFor: WAIT('s') })
    q.storeWhen({ cmd: 'b', correlationId: 'b', waitFor: WAIT('b') })
    q.storeWhen({ cmd: 'c', correlationId: 'c', waitFor: WAIT('c') })
    q.storeWhen({ cmd: 'd', correlationId: 'd', waitFor: { all: [{ pattern: 'a', correlationId: 's' }] } })
    q.store({ cmd: 'paid', correlationId: 's' })
    assert.equal(pendingCount(q, 's'), 0, 'store')
    q.storeBulk([{ cmd: 'other', correlationId: 'z' }, { cmd: 'paid', correlationId: 'b' }])
    assert.equal(pendingCount(q, 'b'), 0, 'storeBulk')
    q.storeWithContext({ cmd: 'paid' }, { correlationId: 'c' })
    assert.equal(pendingCount(q, 'c'), 0, 'storeWithContext')
    assert.equal(pendingCount(q, 'd'), 1)
    // Executing `a` stores an `a` event in `s`, on which `d` waits.
    assert.deepEqual(q.executeReadyEvents().map((e) => e.result.cmd), ['a', 'b', 'c'])
    assert.equal(pendingCount(q, 'd'), 0, "executeReadyEvents' own store")
    assert.deepEqual(q.executeReadyEvents().map((e) => e.result.cmd), ['d'])
  })

  test('a waitFor already satisfied is ready at once', () => {
    const q = open()
    q.store({ cmd: 'paid', correlationId: 'k' })
    assert.deepEqual(q.storeWhen({ cmd: 'ship', correlationId: 'k', waitFor: WAIT('k') }), { pendingEventId: 1, status: 'pending' })
    assert.equal(q.executeReadyEvents().length, 1)
  })

  test('a child event with events of the parent transaction inherits its correlation id, as store does', () => {
    const q = open()
    const parent = q.store({ cmd: 'open', correlationId: 'parent-c' })
    q.storeWhen({ cmd: 'child', causationId: parent.id, waitFor: WAIT('parent-c') })
    q.storeWhen({ cmd: 'orphan', causationId: 999, waitFor: WAIT('nowhere') })
    q.storeWhen({ cmd: 'fresh', waitFor: WAIT('nowhere') })
    const [child] = q.getPendingEventsByCorrelation('parent-c')
    assert.deepEqual(JSON.parse(child.event_data), { cmd: 'child', data: {}, user: '', ip: '', version: 1, correlationId: 'parent-c', causationId: 1, metadata: {} })
    q.store({ cmd: 'paid', correlationId: 'nowhere' })
    const [orphan, fresh] = q.checkAllPendingEvents().slice(-2)
    assert.equal(orphan.correlation_id, null)
    assert.equal('correlationId' in JSON.parse(orphan.event_data), false, 'EventLite leaves it out when the parent is missing')
    assert.match(fresh.correlation_id, /^[0-9a-f-]{36}$/)
    assert.equal(JSON.parse(fresh.event_data).correlationId, fresh.correlation_id)
  })

  test('where compares data fields as JavaScript does: equality and $eq $ne $gt $gte $lt $lte', () => {
    const cases = [
      [{ status: 'paid' }, { status: 'paid' }, true],
      [{ status: 'paid' }, { status: 'PAID' }, false],
      [{ flag: true }, { flag: 1 }, false],
      [{ gone: null }, {}, false],
      [{ n: { $eq: 3 } }, { n: 3 }, true],
      [{ n: { $ne: 3 } }, { n: 4 }, true],
      [{ n: { $ne: 3 } }, {}, true],
      [{ n: { $gt: 3 } }, { n: 3 }, false],
      [{ n: { $gte: 3 } }, { n: 3 }, true],
      [{ n: { $lt: 3 } }, { n: 2.5 }, true],
      [{ n: { $lte: 3, $gt: 1 } }, { n: 3 }, true],
      [{ n: { $gte: 1000 } }, { n: '1500' }, true],
      [{ s: { $lt: 'b' } }, { s: 'abc' }, true],
      [{ s: { $lt: '9' } }, { s: '10' }, true],
      [{ n: { $gte: 0 } }, {}, false],
      [{ n: { $in: [1] } }, { n: 1 }, false],
      [{ a: 1, b: { $gt: 0 } }, { a: 1, b: 0 }, false],
    ]
    const q = open()
    cases.forEach(([where], i) => q.storeWhen({ cmd: `w${i}`, correlationId: `w${i}`, waitFor: { count: { correlationId: `w${i}`, count: 1, where } } }))
    cases.forEach(([, data], i) => q.store({ cmd: 'e', data, correlationId: `w${i}` }))
    cases.forEach(([where, data, ready], i) => assert.equal(pendingCount(q, `w${i}`) === 0, ready, `${JSON.stringify(where)} on ${JSON.stringify(data)}`))
  })

  test('minCount, pattern, and a condition without a correlation id', () => {
    const q = open()
    q.storeWhen({ cmd: 'two', correlationId: 'm', waitFor: { all: [{ pattern: 'vote', correlationId: 'm', minCount: 2 }] } })
    q.storeWhen({ cmd: 'any', correlationId: 'm', waitFor: { all: [{ correlationId: 'm', minCount: 3 }] } })
    q.storeWhen({ cmd: 'never', correlationId: 'm', waitFor: { all: [{ pattern: 'vote' }] } })
    q.store({ cmd: 'vote', correlationId: 'm' })
    q.store({ cmd: 'other', correlationId: 'm' })
    assert.deepEqual(q.checkAllPendingEvents(), [])
    q.store({ cmd: 'vote', correlationId: 'm' })
    assert.deepEqual(q.checkAllPendingEvents().map((r) => JSON.parse(r.event_data).cmd), ['two', 'any'])
    assert.deepEqual(q.getPendingEventsByCorrelation('m').map((r) => JSON.parse(r.event_data).cmd), ['never'])
  })

  test('wrong shapes throw ERR_INVALID_EVENT and store nothing', () => {
    const file = tempDb()
    const q = initQueue({ dbName: file })
    const cond = { pattern: 'p', correlationId: 'c' }
    const bad = [
      [{ waitFor: 5 }, TypeError], [{ waitFor: 'all' }, TypeError], [{ waitFor: [cond] }, TypeError], [{ waitFor: true }, TypeError],
      [{ waitFor: { colour: [cond] } }, TypeError], [{ waitFor: { all: cond } }, TypeError], [{ waitFor: { any: [5] } }, TypeError],
      [{ waitFor: { sequence: [cond, null] } }, TypeError], [{ waitFor: { count: 3 } }, TypeError],
      [{ waitFor: { count: { ...cond, count: '3' } } }, TypeError], [{ waitFor: { count: cond } }, TypeError],
      [{ waitFor: { count: { ...cond, count: -1 } } }, RangeError], [{ waitFor: { count: { ...cond, count: NaN } } }, RangeError],
      [{ waitFor: { all: [{ ...cond, minCount: 'two' }] } }, TypeError], [{ waitFor: { all: [{ ...cond, where: 'x' }] } }, TypeError],
      [{ waitFor: { all: [{ ...cond, pattern: 5 }] } }, TypeError], [{ waitFor: { all: [{ ...cond, where: { n: 1n } }] } }, TypeError],
      [{ waitFor: {} }, RangeError], [{ waitFor: { all: [] } }, RangeError],
      [{ waitFor: { all: [cond] }, timeout: -1 }, RangeError], [{ waitFor: { all: [cond] }, timeout: '100' }, TypeError],
      [{ waitFor: { all: [cond] }, timeout: 1.5 }, RangeError],
      [{ waitFor: { all: [cond] }, version: 0 }, TypeError], [{ waitFor: { all: [cond] }, data: { n: 1n } }, TypeError],
      [{ waitFor: { get all() { throw new Error('getter') } } }, TypeError],
    ]
    for (const [fields, Ctor] of bad) {
      assert.throws(() => q.storeWhen({ cmd: 'x', ...fields }), { name: Ctor.name, code: 'ERR_INVALID_EVENT' }, String(Object.keys(fields)))
    }
    assert.throws(() => q.storeWhen({ data: {}, waitFor: { all: [cond] } }), { name: 'Error', code: 'ERR_INVALID_EVENT' })
    assert.throws(() => q.storeWhen({ cmd: '', waitFor: { all: [cond] } }, undefined, eventCallbacks.void), { name: 'Error', code: 'ERR_INVALID_EVENT' })
    q.close()
    for (const table of ['queue', 'pending_events', 'wait_conditions']) {
      assert.deepEqual(readFile(file, `SELECT COUNT(*) AS n FROM ${table}`), [{ n: 0 }], table)
    }
  })
})

describe('wait conditions: hostile input', () => {
  test('random waitFor shapes: each storeWhen stores one pending event or throws a coded error and stores nothing', () => {
    let seed = 0x5eed
    const random = () => {
      seed = (seed * 1103515245 + 12345) >>> 0
      return seed / 2 ** 32
    }
    const pick = (list) => list[Math.floor(random() * list.length)]
    const values = [undefined, null, true, 0, -1, 2, 1.5, NaN, 'c', '', 'x'.repeat(300), [], {}, [1], { $gt: 1 }, { $in: [] }, () => 1, 10n]
    // Mostly sane conditions with a hostile field now and then, so that validation is passed
    // often enough for evaluation to run on what gets through.
    const sane = {
      pattern: () => pick(['go', 'x']),
      correlationId: () => 'c',
      where: () => ({ n: pick([1, 's', null]), s: { [pick(['$gt', '$lte', '$ne', '$eq', '$x'])]: pick([0, 'c', null, [1]]) } }),
      minCount: () => pick([0, 1, 2]),
      count: () => pick([0, 1, 3]),
      index: () => 9,
    }
    const condition = () => {
      if (random() < 0.05) return pick(values)
      const out = {}
      for (const [key, make] of Object.entries(sane)) {
        if (random() < 0.5) out[key] = random() < 0.08 ? pick(values) : make()
      }
      return out
    }
    const group = () => (random() < 0.05 ? pick(values) : Array.from({ length: Math.floor(random() * 3) + (random() < 0.9 ? 1 : 0) }, condition))
    const file = tempDb()
    const q = initQueue({ dbName: file })
    let stored = 0
    for (let i = 0; i < 600; i++) {
      const waitFor = random() < 0.05 ? pick(values) : {}
      if (waitFor && typeof waitFor === 'object' && !Array.isArray(waitFor)) {
        for (const key of ['all', 'any', 'count', 'sequence', 'other']) {
          if (random() < (key === 'other' ? 0.02 : 0.4)) waitFor[key] = key === 'count' ? condition() : group()
        }
      }
      const event = { cmd: pick(['go', 'go', '', undefined]), correlationId: pick(['c', undefined]), waitFor, timeout: random() < 0.1 ? pick(values) : pick([undefined, 0, 500]) }
      try {
        const result = q.storeWhen(event, undefined, eventCallbacks.void)
        if (result && typeof result === 'object' && 'pendingEventId' in result) stored++
      } catch (err) {
        assert.ok(err instanceof Error && typeof err.code === 'string', `call ${i}: ${err && err.stack}`)
      }
      if (i % 50 === 0) q.store({ cmd: pick(['go', 'c', 'x']), data: { n: i, s: 'c' }, correlationId: 'c' })
      if (i % 100 === 0) [q.checkAllPendingEvents(), q.executeReadyEvents(), q.expirePendingEvents()]
    }
    q.close()
    assert.ok(stored > 20, `some pending events were stored (${stored})`)
    assert.deepEqual(readFile(file, 'SELECT COUNT(*) AS n FROM pending_events'), [{ n: stored }])
  })
})

describe('wait conditions: the pending-event methods', () => {
  test('executeReadyEvents: each ready event is stored once, even by two queues at once', () => {
    const file = tempDb()
    const q1 = initQueue({ dbName: file })
    const q2 = initQueue({ dbName: file })
    after(() => { q1.close(); q2.close() })
    q1.storeWhen({ cmd: 'first', correlationId: 'k', waitFor: { all: [{ pattern: 'go', correlationId: 'k' }] } })
    q1.storeWhen({ cmd: 'second', correlationId: 'k', waitFor: { all: [{ pattern: 'go', correlationId: 'k' }] } })
    q1.store({ cmd: 'go', correlationId: 'k' })
    let inner
    const model = {
      // While q1 executes `first`, q2 executes what is still ready: `second`, which q1 had
      // listed as ready too, and must then skip.
      first() { inner = q2.executeReadyEvents({ second: () => 'by q2' }); return 'by q1' },
      second: () => 'by q1 as well',
    }
    const outer = q1.executeReadyEvents(model)
    assert.deepEqual(inner.map((e) => e.result), ['by q2'])
    assert.deepEqual(outer.map((e) => e.result), ['by q1'])
    assert.deepEqual(q1.getTransaction('k').map((r) => r.cmd).sort(), ['first', 'go', 'second'])
  })

  test('executeReadyEvents: one that cannot be stored stays ready and is reported', () => {
    const file = tempDb()
    const raw = openRaw(file)
    for (const sql of EVENTLITE_SCHEMA) raw.exec(sql)
    raw.exec(eventLitePending({ event: { cmd: 'bad', version: 0 }, waitFor: { any: [{}] }, status: 'ready' }))
    raw.exec(eventLitePending({ event: { data: {} }, waitFor: { any: [{}] }, status: 'ready' }))
    raw.close()
    const q = initQueue({ dbName: file })
    after(() => q.close())
    const errors = []
    assert.deepEqual(q.executeReadyEvents(undefined, { _error: (e) => errors.push(e) }), [])
    assert.deepEqual(errors.map((e) => [e.pendingEvent.id, e.error.code]), [[1, 'ERR_INVALID_EVENT'], [2, 'ERR_INVALID_EVENT']])
    assert.match(errors[0].msg, /^Failed to execute pending event 1: /)
    assert.equal(q.checkAllPendingEvents().length, 2, 'both stay ready')
    const logged = []
    const { error } = console
    console.error = (...args) => logged.push(args)
    try {
      q.executeReadyEvents()
    } finally {
      console.error = error
    }
    assert.deepEqual(logged.map(([message, err]) => [message, err.code]), [
      ['Failed to execute pending event 1:', 'ERR_INVALID_EVENT'], ['Failed to execute pending event 2:', 'ERR_INVALID_EVENT'],
    ], "with no callbacks, EventLite's own line")
    assert.equal(q.getLastRow(), null)
  })

  test('expirePendingEvents marks pending events past expires_at by the datetime clock; expired ones never run', () => {
    const time = clock(1000)
    const q = open({ datetime: time.datetime })
    const short = q.storeWhen({ cmd: 'short', correlationId: 'e', waitFor: { all: [{ pattern: 'go', correlationId: 'e' }] }, timeout: 100 }).pendingEventId
    q.storeWhen({ cmd: 'forever', correlationId: 'e', waitFor: { all: [{ pattern: 'never', correlationId: 'e' }] } })
    q.storeWhen({ cmd: 'zero', correlationId: 'e', waitFor: { all: [{ pattern: 'never', correlationId: 'e' }] }, timeout: 0 })
    time.now.ms = 1100
    assert.deepEqual(q.expirePendingEvents(), [], 'expires_at is not before now')
    time.now.ms = 1101
    const [expired, ...rest] = q.expirePendingEvents()
    assert.deepEqual([expired.id, expired.status, expired.expires_at, rest.length], [short, 'expired', 1100, 0])
    assert.deepEqual(q.expirePendingEvents(), [])
    q.store({ cmd: 'go', correlationId: 'e' })
    assert.deepEqual(q.checkAllPendingEvents(), [])
    assert.deepEqual(q.getPendingEventsByCorrelation('e').map((r) => JSON.parse(r.event_data).cmd), ['forever', 'zero'])
  })

  test('cancelPendingEvent cancels pending events only', () => {
    const q = open()
    const a = q.storeWhen({ cmd: 'a', correlationId: 'c', waitFor: { all: [{ pattern: 'go', correlationId: 'c' }] } }).pendingEventId
    const b = q.storeWhen({ cmd: 'b', correlationId: 'c', waitFor: { all: [{ pattern: 'go', correlationId: 'c' }] } }).pendingEventId
    assert.equal(q.cancelPendingEvent(a), true)
    q.store({ cmd: 'go', correlationId: 'c' })
    assert.equal(q.cancelPendingEvent(b), false, 'b is ready, no longer pending')
    for (const id of [a, 999, 'x', null, 1.5]) assert.equal(q.cancelPendingEvent(id), false, String(id))
    assert.deepEqual(q.executeReadyEvents().map((e) => e.result.cmd), ['b'])
  })

  test('getPendingEventsByCorrelation returns the pending rows of one correlation id, oldest first', () => {
    const time = clock(10)
    const q = open({ datetime: time.datetime })
    for (const cmd of ['x', 'y']) {
      time.now.ms++
      q.storeWhen({ cmd, correlationId: 'g', waitFor: { all: [{ pattern: 'go', correlationId: 'g' }] } })
    }
    q.storeWhen({ cmd: 'z', correlationId: 'h', waitFor: { all: [{ pattern: 'go', correlationId: 'g' }] } })
    assert.deepEqual(q.getPendingEventsByCorrelation('g').map((r) => [JSON.parse(r.event_data).cmd, r.created_at]), [['x', 11], ['y', 12]])
    assert.deepEqual(Object.keys(q.getPendingEventsByCorrelation('g')[0]), ['id', 'event_data', 'wait_conditions', 'created_at', 'expires_at', 'correlation_id', 'status'])
    assert.deepEqual(q.getPendingEventsByCorrelation(5), [])
  })

  test('reset drops the pending events with the log, and so does the reset option', () => {
    const file = tempDb()
    const q = initQueue({ dbName: file, risky: true })
    q.storeWhen({ cmd: 'a', correlationId: 'r', waitFor: { all: [{ pattern: 'go', correlationId: 'r' }] } })
    q.reset()
    assert.deepEqual(q.getPendingEventsByCorrelation('r'), [])
    assert.equal(q.storeWhen({ cmd: 'a', correlationId: 'r', waitFor: { all: [{ pattern: 'go', correlationId: 'r' }] } }).pendingEventId, 1)
    q.close()
    const reopened = initQueue({ dbName: file, reset: true })
    assert.deepEqual(reopened.getPendingEventsByCorrelation('r'), [])
    reopened.close()
  })
})

describe('EventLite details', () => {
  test("cmd missing: callbacks._error gets EventLite's message; with no callbacks at all, store throws", () => {
    const q = open()
    const reported = []
    const event = { data: { x: 1 }, user: 'bob', ip: '1.1.1.1' }
    assert.equal(q.store(event, undefined, { _error: (e) => reported.push(e) }), undefined)
    assert.deepEqual(reported, [{ msg: 'No command given; aborting', priority: 2, user: 'bob', ip: '1.1.1.1', cmd: undefined, data: { x: 1 } }])
    throwsCode(() => q.store(event), TypeError, 'ERR_INVALID_EVENT')
    throwsCode(() => q.store({ cmd: '' }, {}, { _default() {} }), TypeError, 'ERR_INVALID_EVENT')
    throwsCode(() => q.storeWithContext(event, {}), TypeError, 'ERR_INVALID_EVENT')
    q._cb = { _error: (e) => reported.push(e.msg) }
    assert.equal(q.store(event), undefined)
    assert.equal(reported[1], 'No command given; aborting', 'queue._cb is told')
    assert.equal(q.getLastRow(), null)
    assert.equal(q.getMetrics().errorsTotal, 5)
  })

  test('eventCallbacks.stub and .error print what EventLite prints, through console.log', () => {
    const q = open({ datetime: () => 7 })
    const printed = []
    const { log, error } = console
    console.log = (...args) => printed.push(['log', ...args])
    console.error = (...args) => printed.push(['error', ...args])
    const boom = new Error('boom')
    try {
      q.store({ cmd: 'ok', data: { a: 1 }, correlationId: 'c' }, { ok: () => 'fine' }, eventCallbacks.stub)
      q.store({ cmd: 'bad', data: { b: 2 }, user: 'u', ip: 'i', correlationId: 'c', metadata: { m: 3 } }, { bad() { throw boom } }, eventCallbacks.error)
      q.store({ data: { c: 3 } }, undefined, eventCallbacks.stub)
    } finally {
      console.log = log
      console.error = error
    }
    assert.deepEqual(printed, [
      ['log', 'ok sent to be processed by main program with response', 'fine', 'and data', { a: 1 }],
      ['log', 'u at i initiated bad that led to an error: boom', boom, 'bad', 'and then the data', { b: 2 }, 'and finally the rest of the row data',
        { res: undefined, user: 'u', ip: 'i', id: 2, version: 1, datetime: 7, correlation_id: 'c', causation_id: null, metadata: { m: 3 } }],
      ['log', 'No command given; aborting', undefined, undefined, 'and then the data', { c: 3 }, 'and finally the rest of the row data', { priority: 2, user: '', ip: '' }],
    ])
    assert.deepEqual(Object.keys(printed[1][7]), ['res', 'user', 'ip', 'id', 'version', 'datetime', 'correlation_id', 'causation_id', 'metadata'], "EventLite's key order")
  })

  test("queue._model and queue._cb are the defaults of every write and of executeReadyEvents", () => {
    const q = open()
    const calls = []
    q._model = { _queries: {}, _default(data, meta) { calls.push(['model', meta.cmd]); return meta.cmd } }
    q._cb = { _default(res) { calls.push(['cb', res]) }, _error() {} }
    assert.equal(q.store({ cmd: 's' }), 's')
    assert.deepEqual(q.storeBulk([{ cmd: 'b' }]).map((e) => e.result), ['b'])
    assert.equal(q.storeWithContext({ cmd: 'w' }, { correlationId: 'k' }), 'w')
    assert.equal(q.storeWhen({ cmd: 'n' }), 'n', 'storeWhen without waitFor is store')
    q.storeWhen({ cmd: 'later', correlationId: 'k', waitFor: { all: [{ pattern: 'w', correlationId: 'k' }] } })
    assert.deepEqual(q.executeReadyEvents().map((e) => e.result), ['later'])
    const own = { _queries: {}, _default: () => 'own model' }
    assert.equal(q.store({ cmd: 'x' }, own, eventCallbacks.void), 'own model', 'given arguments win')
    assert.deepEqual(calls, ['s', 'b', 'w', 'n', 'later'].flatMap((cmd) => [['model', cmd], ['cb', cmd]]))
  })

  test('streamEvents takes any batch size from 1: 20,000 and 10^9', async () => {
    const q = open()
    for (let i = 0; i < 5; i++) q.storeBulk(Array.from({ length: 5000 }, (_, k) => ({ cmd: 'e', data: { n: i * 5000 + k } })))
    const sizes = async (batchSize) => {
      const out = []
      for await (const batch of q.streamEvents({ batchSize })) out.push(batch.length)
      return out
    }
    assert.deepEqual(await sizes(20000), [20000, 5000])
    assert.deepEqual(await sizes(1e9), [25000])
    assert.deepEqual(await sizes(Number.MAX_SAFE_INTEGER), [25000])
  })

  test('an async handler: its value is awaited, its rejection goes to _error, never unhandled', async () => {
    const q = open()
    const order = []
    const unhandled = []
    const onUnhandled = (reason) => unhandled.push(reason)
    process.on('unhandledRejection', onUnhandled)
    try {
      const model = {
        _queries: {},
        async slow(data) { order.push('model'); return data.n * 2 },
        async reject() { throw new Error('async boom') },
        _done(row, res) { order.push(['done', res]) },
        _error(errObj) { order.push(['model._error', errObj.error.message, errObj.cmd]) },
      }
      const callbacks = {
        _default(res) { order.push(['cb', res]) },
        late: async () => { throw new Error('callback boom') },
        _error(errObj) { order.push(['cb._error', errObj.error.message]) },
      }
      const pending = q.store({ cmd: 'slow', data: { n: 21 } }, model, callbacks)
      assert.ok(pending instanceof Promise)
      assert.equal(await pending, 42)
      assert.deepEqual(order.splice(0), ['model', ['cb', 42], ['done', 42]])
      assert.equal(await q.store({ cmd: 'reject' }, model, callbacks), undefined)
      assert.deepEqual(order.splice(0), [['cb._error', 'async boom'], ['model._error', 'async boom', 'reject']])
      assert.equal(await q.store({ cmd: 'late' }, { _queries: {}, _default: () => 'sync value' }, callbacks), undefined)
      assert.deepEqual(order.splice(0), [['cb._error', 'callback boom']])
      const bulk = q.storeBulk([{ cmd: 'slow', data: { n: 1 } }, { cmd: 'reject' }], model, eventCallbacks.void)
      assert.deepEqual(await Promise.all(bulk.map((e) => e.result)), [2, undefined])
      assert.equal(q.getMetrics().eventCount, 5, 'every event stayed stored')
      await new Promise((resolve) => setImmediate(resolve))
      assert.deepEqual(unhandled, [])
    } finally {
      process.off('unhandledRejection', onUnhandled)
    }
  })
})
